"""`python -m trainer.evaluate`: the command's short name; the code lives in `trainer.evaluation`."""
from trainer.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
