"""Networks: ResNets with one SAM slot per residual block (resnet), the SAM registry
(sams, layers/), model-name parsing (names), masking, materializing and weight inheritance
(slots, which checks a ticket/ against the network). Imports util/ and ticket/."""
