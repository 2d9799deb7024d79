"""A network's forms, each checked: TorchScript (the store's contract), a torch.export program (`.pt2`) and ONNX.
Every file is written, read back with the runtime that will use it, and must reproduce the eager model on fixed
inputs within TOLERANCE; a form that does not is removed and named, with its difference."""
from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

from shared.errors import UserError
from shared.imaging import torchscript
from shared.imaging.latents import LatentLayout
from shared.store import form_file

TOLERANCE = 1e-4  # relative to the output's largest magnitude (at least 1): a D sure of itself has logits in
#                   the tens, each the sum of far larger terms, and reordered float sums differ in their last bits
#                   (1.1e-5 of the largest logit has been seen from a sound ONNX form); a broken form is off by
#                   the output's own scale


class ExportError(UserError):
    pass


Inputs = torch.Tensor | tuple[torch.Tensor, ...]  # a module's one input, or its several (a conditional D: images, classes)


def export_torchscript(model: nn.Module, example: Inputs, path: Path, check: Inputs | None = None) -> float:
    """Trace `model` in eval mode on the CPU, save it to `path`, reload it and compare on `check`.

    Returns the max abs difference; raises ExportError above TOLERANCE x max(1, the largest output) (the file is
    then removed).
    """
    eager = copy.deepcopy(model).cpu().eval()
    example = _on_cpu(example)
    check = example if check is None else _on_cpu(check)
    with torch.no_grad(), torchscript.quiet_jit():
        traced = torch.jit.trace(eager, example)
        # through memory: torch.jit.save straight to a file aborts the whole process when the disk is full,
        # while a Python write raises an OSError the store reports in one line
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        Path(path).write_bytes(buffer.getbuffer())
        return _compared("TorchScript", type(model).__name__, path, eager(*check), torchscript.load(path)(*check))


BATCH = "batch"  # the dynamic axis of every form: any number of rows
MAX_BATCH = 65_536
ONNX_OPSET = 18  # what ONNX Runtime and onnxruntime-web both run


def export_program(model: nn.Module, example: Inputs, path: Path,
                   check: Inputs | None = None) -> tuple[float, torch.export.ExportedProgram]:
    """`torch.export` of `model` in eval mode on the CPU, with a dynamic batch axis, saved to `path`
    (`torch.export.save`), loaded back and compared on `check`. Returns the max abs difference, and the program
    (what the ONNX form is made from)."""
    eager = copy.deepcopy(model).cpu().eval()
    check = _on_cpu(example if check is None else check)
    with torch.no_grad():
        program = _exported(eager, _on_cpu(example))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        Path(path).write_bytes(buffer.getbuffer())
        reloaded = torch.export.load(path).module()
        return _compared("torch.export", type(model).__name__, path, eager(*check), reloaded(*check)), program


def export_onnx(program: torch.export.ExportedProgram, path: Path, check: Inputs, expected: torch.Tensor,
                input_names: tuple[str, ...] = ("input",), output_name: str = "output", what: str = "the network") -> float:
    """ONNX of an exported program (one self-contained file, opset ONNX_OPSET, the program's dynamic batch axis
    on every input and the output), run back with ONNX Runtime on the CPU and compared with `expected` on
    `check`. Needs the `onnx` extra (onnx, onnxscript, onnxruntime). Returns the max abs difference."""
    import onnxruntime

    onnx_program = torch.onnx.export(program, dynamo=True, input_names=list(input_names), output_names=[output_name],
                                     opset_version=ONNX_OPSET, external_data=False, verbose=False)
    Path(path).write_bytes(onnx_program.model_proto.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([output_name], {name: x.numpy() for name, x in zip(input_names, _on_cpu(check))})
    return _compared("ONNX", what, path, expected, torch.from_numpy(out))


def _exported(eager: nn.Module, example: tuple[torch.Tensor, ...]) -> torch.export.ExportedProgram:
    batch = torch.export.Dim(BATCH, min=1, max=MAX_BATCH)
    return torch.export.export(eager, example, dynamic_shapes=tuple({0: batch} for _ in example))


def _compared(form: str, what: str, path: Path, expected: torch.Tensor, got: torch.Tensor) -> float:
    """The max abs difference of a form's output from the eager model's; ExportError (and the file removed)
    above the bound."""
    diff = (got.float() - expected.float()).abs().max().item()
    bound = TOLERANCE * max(1.0, expected.abs().max().item())
    if not diff <= bound:  # also catches NaN
        Path(path).unlink(missing_ok=True)
        raise ExportError(f"{form} export of {what} differs from the eager model by {diff:g} "
                          f"(more than {bound:g})")
    return diff


def _on_cpu(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    return tuple(x.cpu() for x in (inputs if isinstance(inputs, tuple) else (inputs,)))


class ClassWeightsInput(nn.Module):
    """A conditional generator with its two parts as two inputs, z (N, style) and the class weights (N, classes):
    ONNX's form of it, for runtimes that are handed a class rather than a concatenated vector."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([z, class_weights], 1))


ONNX_NAMES = {  # each network's ONNX inputs (unconditional, conditional) and output
    "generator": ((("latents",), ("latents", "class")), "images"),
    "discriminator": ((("images",), ("images", "class")), "logits"),
    "encoder": ((("images",), ("images",)), "latents"),
}


def export_network(network: str, model: nn.Module, example: Inputs, check: Inputs, directory: Path,
                   layout: LatentLayout) -> dict[str, float]:
    """Every form of one network (`network`: generator, discriminator or encoder) into `directory`, each checked;
    {form: max abs difference from the eager model} (TorchScript only where this torch still runs it). A conditional generator's ONNX form takes z and the class
    weights as two inputs; its other forms take them as one vector, as the store's generator always has."""
    eager = copy.deepcopy(model).cpu().eval()
    example, check = _on_cpu(example), _on_cpu(check)
    diffs = {}
    if torchscript.available():  # where torch no longer runs TorchScript, a version has the other two forms
        diffs["torchscript"] = export_torchscript(eager, example, directory / form_file(network, "torchscript"), check)
    diffs["export"], program = export_program(eager, example, directory / form_file(network, "export"), check)
    (plain, conditional), output = ONNX_NAMES[network]
    if network == "generator" and layout.conditional:
        with torch.no_grad():
            program = _exported(ClassWeightsInput(eager), (layout.style_of(example[0]), layout.class_weights(example[0])))
        check_inputs = (layout.style_of(check[0]), layout.class_weights(check[0]))
    else:
        check_inputs = check
    with torch.no_grad():
        expected = eager(*check)
    diffs["onnx"] = export_onnx(program, directory / form_file(network, "onnx"), check_inputs, expected,
                                conditional if layout.conditional else plain, output, type(model).__name__)
    return diffs
