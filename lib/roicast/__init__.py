"""roicast: forecast the daily return of many assets with a hybrid LSTM-attention network.

Importing the package is cheap: TensorFlow is imported only by the modules that train
or load models (`models`, `training`, `ensemble`).
"""

from roicast.errors import RoicastError

__version__ = "0.1.0"
__all__ = ["RoicastError", "__version__"]
