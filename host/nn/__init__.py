"""The network side: MNIST data, the float model and its training, int8 quantization
(PyTorch) and the quantized model that the compiler and the golden model take."""
