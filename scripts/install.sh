#!/usr/bin/env bash
# Install the ANC Edge agent as a system service on a Debian/Ubuntu device (run as root).
#
#   sudo ./scripts/install.sh            # install or upgrade from this checkout
#
# What it does (safe to run again; an existing /etc/anc-agent/agent.yaml is never overwritten):
#   1. installs the system packages the agent needs (Python, PortAudio, ALSA);
#   2. creates the `anc-agent` system user (no login, no home) in the `audio` group;
#   3. builds a virtual environment in /opt/anc-agent/venv and installs this package into it;
#   4. installs the example config as /etc/anc-agent/agent.yaml (mode 0640, group anc-agent) when absent,
#      and compiles every numba kernel into /var/lib/anc-agent/numba-cache as the service user (so the
#      first start loads kernels instead of compiling them);
#   5. installs systemd/anc-agent.service into /etc/systemd/system, checks it with systemd-analyze,
#      reloads systemd and enables the service (start it with `systemctl start anc-agent`).
# Environment: PREFIX (default /opt/anc-agent), CONFIG_DIR (default /etc/anc-agent),
# UNIT_DIR (default /etc/systemd/system), NO_SYSTEMCTL=1 to skip systemctl (images, containers).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${PREFIX:-/opt/anc-agent}"
CONFIG_DIR="${CONFIG_DIR:-/etc/anc-agent}"
UNIT_DIR="${UNIT_DIR:-/etc/systemd/system}"
SERVICE_USER=anc-agent

if [ "$(id -u)" -ne 0 ]; then
  echo "install: run as root (sudo $0)" >&2
  exit 1
fi

echo "install: system packages"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  python3 python3-venv libportaudio2 libasound2 alsa-utils >/dev/null

echo "install: user $SERVICE_USER"
if ! getent group audio >/dev/null; then
  groupadd --system audio
fi
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --groups audio "$SERVICE_USER"
else
  usermod -a -G audio "$SERVICE_USER"
fi

echo "install: package into $PREFIX/venv"
install -d -m 0755 "$PREFIX"
if [ ! -x "$PREFIX/venv/bin/python" ]; then
  python3 -m venv "$PREFIX/venv"
fi
"$PREFIX/venv/bin/python" -m pip install -q --upgrade pip
"$PREFIX/venv/bin/python" -m pip install -q .
install -m 0644 README.md "$PREFIX/README.md"

echo "install: configuration in $CONFIG_DIR"
install -d -m 0750 -g "$SERVICE_USER" "$CONFIG_DIR"
if [ ! -e "$CONFIG_DIR/agent.yaml" ]; then
  install -m 0640 -g "$SERVICE_USER" config/agent.example.yaml "$CONFIG_DIR/agent.yaml"
else
  echo "install: keeping the existing $CONFIG_DIR/agent.yaml"
fi
install -m 0644 config/agent.example.yaml "$CONFIG_DIR/agent.example.yaml"

echo "install: compiling the kernels into the service's numba cache"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" /var/lib/anc-agent /var/lib/anc-agent/numba-cache
runuser -u "$SERVICE_USER" -- env NUMBA_CACHE_DIR=/var/lib/anc-agent/numba-cache \
  "$PREFIX/venv/bin/python" -m agent.service.warmup

echo "install: systemd unit"
install -d -m 0755 "$UNIT_DIR"
sed "s#/opt/anc-agent#$PREFIX#g; s#/etc/anc-agent/agent.yaml#$CONFIG_DIR/agent.yaml#g" \
  systemd/anc-agent.service >"$UNIT_DIR/anc-agent.service"
chmod 0644 "$UNIT_DIR/anc-agent.service"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$UNIT_DIR/anc-agent.service"
fi
if [ "${NO_SYSTEMCTL:-0}" != 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable anc-agent.service
  echo "install: done; start with: systemctl start anc-agent"
else
  echo "install: done (systemctl skipped); the unit is $UNIT_DIR/anc-agent.service"
fi
