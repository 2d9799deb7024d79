"""FID and KID on Inception-v3 pool features, the papers' feature space, when torchvision's ImageNet weights are
already on the machine (nothing is downloaded at evaluation time). Get them once, where there is internet:

    python -c "import torchvision; torchvision.models.inception_v3(weights='DEFAULT')"

which puts `inception_v3_google-0cc3c7bd.pth` in torch's hub cache (`torch.hub.get_dir()/checkpoints`, e.g.
~/.cache/torch/hub/checkpoints; TORCH_HOME moves it). Images are resized to 299x299 (grey ones repeated over
three channels) and normalised as torchvision's weights expect. These are torchvision's weights, not the
TF-Inception of the original FID code, so values are close to, not equal to, papers'.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from trainer.evaluation.metrics import fid, kid

WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
HOW_TO_GET = ("python -c \"import torchvision; torchvision.models.inception_v3(weights='DEFAULT')\" on a machine "
              "with internet, then copy the file there")
BATCH = 50
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as torchvision's transforms use


def weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def available() -> bool:
    return weights_path().is_file()


def load_inception(device: torch.device) -> torch.nn.Module:
    """torchvision's Inception-v3 with its ImageNet weights from the hub cache, the classifier removed: (N, 2048)."""
    from torchvision.models.inception import Inception3

    net = Inception3(aux_logits=True, transform_input=True, init_weights=False)
    net.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    net.fc = torch.nn.Identity()
    return net.eval().to(device)


@torch.inference_mode()
def inception_features(net: torch.nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pool features (N, 2048) of uint8 images (N, C, H, W), C 1 or 3."""
    mean = torch.tensor(_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=device).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(images), BATCH):
        x = images[start:start + BATCH].to(device).float() / 255
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        out.append(net((x - mean) / std).float().cpu())
    return torch.cat(out)


def inception_metrics(real_features: torch.Tensor, fake: torch.Tensor, net: torch.nn.Module,
                      device: torch.device) -> dict:
    """`inception_fid`, `inception_kid` of generated uint8 images against the reference's features."""
    features = inception_features(net, fake, device)
    return {"inception_fid": fid(real_features, features), "inception_kid": kid(real_features, features)[0]}
