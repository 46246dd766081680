"""Turning coarse CAMs into tamper masks: CAM handling, segmenters, segment-and-fuse."""
