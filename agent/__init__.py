"""ANC Edge device agent: adaptive noise cancellation on the device, synced to the cloud."""

__version__ = "0.1.0"
