"""The rate path: bit allocation, transforms, entropy models and coders, bitstream versions."""
