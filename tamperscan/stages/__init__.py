"""The pipeline stages: plain callables over column batches (`tamperscan.batch`), one module
each, shared by Ray Data, Ray Serve, evaluation and explain. How they compose -- order,
cascade, score and mask rules -- is `tamperscan.graph`'s job, not theirs.

A stage's ``kind`` says where a front door runs it: "model" stages in model actors or
deployments (GPUs), "cpu" stages beside the decoder.
"""

from tamperscan.stages.copy_move import FindCopyMove
from tamperscan.stages.decode import DecodeELA, input_sizes
from tamperscan.stages.jpeg import JpegEvidence
from tamperscan.stages.nets import NETS, Net, Nets, load_net, map_score
from tamperscan.stages.read import ReadBytes, read_batch
from tamperscan.stages.refine import Refine, refine_at

__all__ = ["NETS", "DecodeELA", "FindCopyMove", "JpegEvidence", "Net", "Nets", "ReadBytes",
           "Refine", "input_sizes", "load_net", "map_score", "read_batch", "refine_at"]
