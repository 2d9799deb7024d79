"""The runtimes a version's generator can be served on, each reading one of its forms: TorchScript and the
torch.export program run through torch (fp32 or bf16 autocast; CUDA graphs on CUDA, `service.engine.runner`),
ONNX Runtime and OpenVINO read the ONNX file (optional extras). `candidates` says which (runtime, precision)
pairs a version can be served with here; `Forwards` builds each one's forward, quantised to uint8 exactly as
the torch path quantises, so a runtime changes speed, never the meaning of a pixel.

ONNX Runtime gets as many threads as torch has and does not spin between calls: the two share the cores, and a
pool that spins after each call slows the other's next forward.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch

from service.engine.runner import GeneratorRunner
from shared.imaging import torchscript
from shared.imaging.grids import to_uint8
from shared.imaging.latents import LatentLayout
from shared.imaging.networks import load_program
from shared.imaging.precision import AUTO, BF16, FP32
from shared.store import Version, form_file

TORCHSCRIPT, EXPORT, ONNXRUNTIME, OPENVINO = "torchscript", "export", "onnxruntime", "openvino"
RUNTIMES = (TORCHSCRIPT, EXPORT, ONNXRUNTIME, OPENVINO)  # also the order of preference between equals
SETTINGS = (AUTO, *RUNTIMES)
FORM = {TORCHSCRIPT: "torchscript", EXPORT: "export", ONNXRUNTIME: "onnx", OPENVINO: "onnx"}
PACKAGE = {ONNXRUNTIME: ("onnxruntime", "onnx"), OPENVINO: ("openvino", "openvino")}  # module, latentlab extra

Forward = Callable[[torch.Tensor], torch.Tensor]  # (n, latent_dim) float32 CPU latents -> uint8 (n, C, H, W) CPU


@dataclass(frozen=True, order=True)
class Candidate:
    runtime: str
    precision: str

    def __str__(self) -> str:
        return f"{self.runtime} {self.precision}"


def unavailable(runtime: str) -> str | None:
    """Why `runtime` cannot run in this process (what to install), or None when it can."""
    if runtime == TORCHSCRIPT and not torchscript.available():
        return "this torch cannot run TorchScript"
    if runtime in PACKAGE:
        module, extra = PACKAGE[runtime]
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'latentlab[{extra}]')"
    return None


def precisions(runtime: str, device: torch.device) -> tuple[str, ...]:
    """The precisions `runtime` computes in on `device` (empty: it does not run there)."""
    if runtime in (TORCHSCRIPT, EXPORT):
        return (FP32, BF16)
    if runtime == ONNXRUNTIME:  # its CUDA provider only where onnxruntime-gpu provides it
        import onnxruntime

        usable = device.type == "cpu" or "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        return (FP32,) if usable else ()
    return (FP32, BF16) if device.type == "cpu" else ()  # OpenVINO: its CPU plugin


def candidates(version: Version, device: torch.device, runtime: str,
               allowed: tuple[str, ...]) -> tuple[list[Candidate], list[str]]:
    """The (runtime, precision) pairs `version` can be served with, as RUNTIME asks and among the precisions
    PRECISION `allowed` (shared.imaging.precision.allowed_precisions), in order of preference; and what was left
    out, and why. A runtime asked for whose form the version lacks (an older version) falls back to what it has."""
    files, chosen, left_out = version.manifest.files, [], []
    for name in (RUNTIMES if runtime == AUTO else (runtime,)):
        why = unavailable(name)
        if why is None and form_file("generator", FORM[name]) not in files:
            why = f"v{version.version} has no {FORM[name]} form (python -m trainer.upgrade adds it)"
        elif why is None and not precisions(name, device):
            why = f"it does not run on {device.type} here"
        if why is not None:
            left_out.append(f"{name}: {why}")
            continue
        chosen += [Candidate(name, p) for p in precisions(name, device) if p in allowed]
    if not chosen and runtime != AUTO:
        fallback, more = candidates(version, device, AUTO, allowed)
        return fallback, [*left_out, "so it is served as RUNTIME=auto would serve it"] + more
    if not chosen:
        raise ValueError(f"{version.name} v{version.version} cannot be served here: " + "; ".join(left_out))
    return chosen, left_out


class Forwards:
    """Builds the forward of each candidate for one version: torch modules and runtime sessions are loaded once,
    each precision of a torch runtime runs the same module. `module` is the torch module already loaded for the
    version (its warm-up, directions and projection use it), of `module_form`."""

    def __init__(self, version: Version, device: torch.device, layout: LatentLayout, max_batch: int,
                 cuda_graphs: bool, module: torch.nn.Module, module_form: str) -> None:
        self.version, self.device, self.layout = version, device, layout
        self.max_batch, self.cuda_graphs = max_batch, cuda_graphs
        self._modules = {module_form: module}

    def __call__(self, candidate: Candidate) -> Forward:
        if candidate.runtime in (TORCHSCRIPT, EXPORT):
            return GeneratorRunner(self._module(candidate.runtime), self.device, self.layout.width, self.max_batch,
                                   self.cuda_graphs, candidate.precision)
        path = self.version.path / form_file("generator", "onnx")
        if candidate.runtime == ONNXRUNTIME:
            return OnnxRuntimeForward(str(path), self.device, self.layout)
        return OpenVinoForward(str(path), candidate.precision, self.layout)

    def _module(self, runtime: str) -> torch.nn.Module:
        if runtime not in self._modules:
            path = self.version.path / form_file("generator", FORM[runtime])
            self._modules[runtime] = (torchscript.load(path, self.device) if runtime == TORCHSCRIPT
                                      else load_program(path, self.device))
        return self._modules[runtime]


def _inputs(layout: LatentLayout, latents: torch.Tensor) -> list:
    """The ONNX generator's inputs: the latents, or a conditional one's z and class weights apart."""
    if layout.conditional:
        return [layout.style_of(latents).numpy(), layout.class_weights(latents).numpy()]
    return [latents.numpy()]


class OnnxRuntimeForward:
    """The ONNX generator on ONNX Runtime (its CUDA provider on CUDA)."""

    def __init__(self, path: str, device: torch.device, layout: LatentLayout) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        self.names = [i.name for i in self.session.get_inputs()]
        self.layout = layout

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        feed = dict(zip(self.names, _inputs(self.layout, latents.contiguous())))
        (images,) = self.session.run(None, feed)
        return to_uint8(torch.from_numpy(images))


class OpenVinoForward:
    """The ONNX generator compiled by OpenVINO for the CPU, in f32 or with its bf16 inference hint."""

    def __init__(self, path: str, precision: str, layout: LatentLayout) -> None:
        import openvino

        config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == BF16 else "f32",
                  "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = openvino.Core().compile_model(path, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.layout = layout

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        result = self.request.infer(_inputs(self.layout, latents.contiguous()))
        return to_uint8(torch.from_numpy(result[self.compiled.output(0)].copy()))
