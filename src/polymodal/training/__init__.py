"""Training on Lightning: the module, callbacks and the fit loop set-up."""

from .fit import FitResult, fit_model, predict_outputs

__all__ = ["FitResult", "fit_model", "predict_outputs"]
