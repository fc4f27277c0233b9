"""How the CPU runs the model: precision (bf16, int8), the allocator, torch.distributed helpers and the
optional C++ attention kernel."""
