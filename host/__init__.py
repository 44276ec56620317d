"""The host side: data, training, quantization, golden model, compiler, backends, CLI."""
