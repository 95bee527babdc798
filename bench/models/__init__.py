"""Networks: ResNets with one SAM slot per residual block (resnet) and their shapes by name
(backbones), the SAM registry (sams, layers/), model-name parsing (names), masking,
materializing and weight inheritance (slots, which checks a ticket/ against the network).
backbones, sams and names import no torch (the CLI reads them). Imports util/ and ticket/."""
