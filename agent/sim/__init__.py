"""The simulated acoustic world the device code runs against, and `anc-agent simulate`.

- `paths`: acoustic impulse responses (built in from a profile, or loaded from WAV/.npy files).
- `noise`: noise sources parsed from a spec (`tonal:HZ`, `broadband:LO-HI`, `engine:RPM0-RPM1`, a WAV file).
- `plant`: `AcousticPlant.step(outdata, indata)`, the loop with its real two-block + converter delay.
- `metrics`: attenuation, its curve over time, convergence time, secondary-path model error.
- `run`: identification then control through the plant, timed, compared with the uncontrolled error.
- `plot`: the PNG of one run. `wavio`: WAV reading at the profile's sample rate.
"""
