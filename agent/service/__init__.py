"""The device daemon around the audio engine (`anc-agent run`).

- `daemon`: life cycle, signals (SIGTERM stop, SIGHUP reload, SIGUSR1 stall diagnostic), sync start-up;
- `control`: the control thread and the `agent.ports.ControlPort` the sync layer calls;
- `safety_monitor`: features + local emergency detector + pass-through override;
- `telemetry`: the 1 Hz aggregate; `settings`: tunables by shadow name, validated against the profile;
- `checkpoint`: atomic, checksummed coefficient checkpoints; `sdnotify`: systemd notify protocol;
- `bench`: callback, allocation, CPU and start-up figures; `warmup`: fills numba's cache at install.
"""
