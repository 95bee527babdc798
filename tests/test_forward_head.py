"""SlotResNet.forward_head speaks timm's convention: pool, flatten, classifier (skipped with
pre_logits). Reference: timm's resnet18 (pretrained=False) holding our weights (timm's
parameter names are torchvision's, which ours load strictly)."""

from __future__ import annotations

import pytest
import timm
import torch

from bench.models.resnet import build_model


def test_forward_head_matches_timm_and_completes_forward() -> None:
    torch.manual_seed(0)
    ours = build_model("resnet18", num_classes=10).eval()
    ref = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feat = ref.forward_features(x)  # timm's final feature map
        for pre_logits in (False, True):
            want = ref.forward_head(feat, pre_logits=pre_logits)
            got = ours.forward_head(feat, pre_logits=pre_logits)
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        assert ours.forward_head(feat, pre_logits=True).shape == (2, ours.num_features)
        # Ours: forward_features gives the stage features (the dense-task contract), the
        # last being timm's final feature map; forward_intermediates gives it first.
        logits = ours(x)
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x)[-1]), logits,
                                   rtol=0, atol=0)  # fmt: skip
        final, _ = ours.forward_intermediates(x)
        torch.testing.assert_close(ours.forward_head(final), logits, rtol=0, atol=0)


def test_headless_backbone_has_no_head() -> None:
    net = build_model("resnet20", num_classes=0)
    with pytest.raises(RuntimeError, match="headless"):
        net.forward_head(torch.randn(1, 64, 8, 8))
