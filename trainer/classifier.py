"""`python -m trainer.classifier`: the command's short name; the code lives in `trainer.evaluation`."""
from trainer.evaluation.classifier import main

if __name__ == "__main__":
    raise SystemExit(main())
