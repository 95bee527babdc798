"""Our own self-attention modules (those timm does not implement); one module per file."""

from bench.models.layers.dia import DIACell
from bench.models.layers.gct import GCT
from bench.models.layers.sge import SGE
from bench.models.layers.simam import SimAM
from bench.models.layers.srm import SRM

__all__ = ["DIACell", "GCT", "SGE", "SimAM", "SRM"]
