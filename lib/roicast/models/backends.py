"""Which Keras backend trains the network, and on what device.

Keras 3 runs the same model on TensorFlow, PyTorch or JAX, chosen by the KERAS_BACKEND
environment variable before Keras is first imported (the runner sets it from the `backend`
parameter). Everything here asks the backend in use and imports only that backend's
framework, so a machine with PyTorch or JAX and a GPU but no TensorFlow trains too.
"""

import keras


def name() -> str:
    """'tensorflow', 'torch' or 'jax': the backend Keras was imported with."""
    return keras.config.backend()


def gpu_available() -> bool:
    """Whether the backend in use trains on a GPU (the LSTMs then take cuDNN's kernel)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    return False


def device() -> str:
    """'cpu', or the name of the GPU the backend trains on (train.json records it)."""
    if not gpu_available():
        return "cpu"
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        gpu = tf.config.list_physical_devices("GPU")[0]
        return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    import jax

    return jax.devices()[0].device_kind


def make_deterministic() -> None:
    """Ask TensorFlow for deterministic kernels; PyTorch's and JAX's CPU kernels already are."""
    if name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def limit_threads(threads: int) -> None:
    """Cap the backend's CPU thread pools: a worker process's initializer, run before any op.

    JAX sizes XLA's CPU pool itself when it starts and offers no cap afterwards.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
