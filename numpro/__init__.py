"""numpro: numbered-frame prompting (NumPro, CVPR 2025) for zero-shot grounding."""
