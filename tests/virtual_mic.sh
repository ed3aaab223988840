#!/usr/bin/env bash
# Virtual microphone for tests and CI: no sound card, works as root without systemd or dbus.
#
# A PulseAudio null sink whose monitor is the default source (recipe below), made idempotent
# and stoppable, so the capture tests run without audio hardware.
#
#   PortAudio (ALSA host API) -> ALSA "default"/"pulse" PCM (libasound2-plugins)
#     -> PulseAudio null sink "virt"; its monitor "virt.monitor" is the default source,
#   so whatever is played into the sink (paplay --device=virt clip.flac) is what
#   sounddevice.InputStream() / `stream-ser listen` captures.
#
# Usage:
#   bash tests/virtual_mic.sh [start]   start the daemon, or reuse the one already answering
#   bash tests/virtual_mic.sh stop      kill the daemon of this state dir
#   bash tests/virtual_mic.sh status    exit 0 if the daemon answers
#   bash tests/virtual_mic.sh add-sink NAME [RATE] [CHANNELS] [DESCRIPTION]
#                                       one more null sink (idempotent); its monitor source
#                                       "NAME.monitor" ("Monitor of DESCRIPTION") is a second
#                                       virtual input device: two of them simulate a microphone and
#                                       the other side of a call (stream-ser listen --device A --device B)
# then, in the process that captures (before it first imports sounddevice):
#   export PULSE_SERVER=unix:$VMIC_STATE/native
# The last line printed by `start` is exactly that export line, so `eval "$(bash
# tests/virtual_mic.sh | tail -n1)"` works too.
#
# Environment:
#   VMIC_STATE   state dir: socket, pid, log, daemon HOME (default /tmp/stream-ser-vmic)
#   VMIC_SINK    null-sink name (default virt)
#   VMIC_RATE    null-sink sample rate (default 48000)
#
# ALSA -> PulseAudio routing: PortAudio only sees ALSA devices. libasound2-plugins provides
# the "pulse" PCM (alsa.conf.d/50-pulseaudio.conf), and on Debian/Ubuntu the pulseaudio
# package installs a hook (alsa.conf.d/pulse.conf, /etc/alsa/conf.d/99-pulse.conf) that makes
# "pulse" the ALSA default *when a PulseAudio server is reachable* (PULSE_SERVER is honoured).
# If no such hook or default is configured, this script writes /etc/asound.conf (as root) or
# ~/.asoundrc with `pcm.!default { type pulse }` / `ctl.!default { type pulse }` -- but only if
# that file does not exist yet; it never edits an existing ALSA config.
set -euo pipefail

STATE=${VMIC_STATE:-/tmp/stream-ser-vmic}
SINK=${VMIC_SINK:-virt}
RATE=${VMIC_RATE:-48000}
SOCKET="$STATE/native"
PIDFILE="$STATE/xdg/pulse/pid"
export PULSE_SERVER="unix:$SOCKET"
unset PULSE_RUNTIME_PATH PULSE_STATE_PATH

say() { echo "virtual_mic: $*" >&2; }

answering() { timeout 5 pactl info >/dev/null 2>&1; }

daemon_pid() {
  # The pid of this state dir's daemon, if it is alive and really a pulseaudio process.
  local pid
  [ -r "$PIDFILE" ] || return 1
  pid=$(tr -dc '0-9' <"$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  grep -q pulseaudio "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

stop_daemon() {
  local pid
  if pid=$(daemon_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    say "stopped PulseAudio (pid $pid, state $STATE)"
  else
    say "no PulseAudio running for state $STATE"
  fi
  rm -f "$SOCKET" "$PIDFILE"
}

ensure_packages() {
  local libdir missing=0
  command -v pulseaudio >/dev/null || missing=1
  command -v pactl >/dev/null || missing=1
  command -v paplay >/dev/null || missing=1
  ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || missing=1
  libdir=$(ls -d /usr/lib/*/alsa-lib /usr/lib/alsa-lib /usr/lib64/alsa-lib 2>/dev/null | head -n1 || true)
  [ -n "$libdir" ] && [ -e "$libdir/libasound_module_pcm_pulse.so" ] || missing=1
  [ "$missing" = 0 ] && return 0
  command -v apt-get >/dev/null || { say "missing packages and no apt-get: install libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins"; exit 1; }
  [ "$(id -u)" = 0 ] || { say "missing packages; run as root or: sudo apt-get install libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins"; exit 1; }
  say "installing libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins >/dev/null
}

ensure_alsa_routing() {
  # Is ALSA's default PCM routed to PulseAudio (hook or explicit default)? Then nothing to do.
  local f
  for f in /etc/asound.conf "${HOME:-/nonexistent}/.asoundrc" /etc/alsa/conf.d/*.conf /usr/share/alsa/alsa.conf.d/*.conf; do
    [ -r "$f" ] || continue
    if grep -q 'conf_pulse_hook_load_if_running' "$f" \
       || { grep -q 'pcm\.!default' "$f" && grep -q 'type *pulse' "$f"; }; then
      return 0
    fi
  done
  if [ "$(id -u)" = 0 ] && [ ! -e /etc/asound.conf ]; then f=/etc/asound.conf
  elif [ -n "${HOME:-}" ] && [ ! -e "$HOME/.asoundrc" ]; then f="$HOME/.asoundrc"
  else
    say "warning: ALSA default is not routed to PulseAudio and $f exists; use --device pulse"
    return 0
  fi
  printf '# written by stream-ser tests/virtual_mic.sh: ALSA default -> PulseAudio\npcm.!default { type pulse }\nctl.!default { type pulse }\n' >"$f"
  say "wrote $f (ALSA default -> PulseAudio)"
}

start_daemon() {
  mkdir -p "$STATE/home" "$STATE/xdg"
  chmod 700 "$STATE/xdg"
  if answering; then
    say "reusing PulseAudio already answering on $PULSE_SERVER"
  else
    stop_daemon 2>/dev/null  # a daemon that is alive but not answering, or stale files
    : >"$STATE/pulse.log"
    HOME="$STATE/home" XDG_RUNTIME_DIR="$STATE/xdg" pulseaudio -D -n \
      --exit-idle-time=-1 --disallow-exit --disable-shm=yes \
      --log-target=file:"$STATE/pulse.log" \
      --load="module-native-protocol-unix auth-anonymous=1 socket=$SOCKET" \
      || { say "pulseaudio failed to start; log:"; cat "$STATE/pulse.log" >&2; exit 1; }
    for _ in $(seq 100); do answering && break; sleep 0.05; done
    answering || { say "pulseaudio started but does not answer on $PULSE_SERVER; log:"; cat "$STATE/pulse.log" >&2; exit 1; }
  fi
  if ! pactl list short sinks | awk '{print $2}' | grep -qx "$SINK"; then
    pactl load-module module-null-sink "sink_name=$SINK" "rate=$RATE" \
      "sink_properties=device.description=VirtualMic" >/dev/null
  fi
  pactl set-default-sink "$SINK"
  pactl set-default-source "$SINK.monitor"
}

add_sink() {
  # add_sink NAME RATE CHANNELS DESCRIPTION: a null sink whose monitor is one more input source.
  local name=$1 rate=${2:-48000} channels=${3:-2} description=${4:-$1}
  answering || { say "no PulseAudio answering on $PULSE_SERVER; run: bash $0 start"; exit 1; }
  if ! pactl list short sinks | awk '{print $2}' | grep -qx "$name"; then
    # module arguments: the value in double quotes, the property value (may hold spaces) in single
    pactl load-module module-null-sink "sink_name=$name" "rate=$rate" "channels=$channels" \
      "sink_properties=\"device.description='$description'\"" >/dev/null
  fi
  say "sink $name ($rate Hz, $channels ch): play into it with paplay --device=$name; capture its monitor, \"Monitor of $description\""
}

case "${1:-start}" in
  start)
    ensure_packages
    ensure_alsa_routing
    start_daemon
    pid=$(daemon_pid || echo "?")
    say "ready: sink $SINK, default source $SINK.monitor (pid $pid, state $STATE)"
    say "play into it:  PULSE_SERVER=$PULSE_SERVER paplay --device=$SINK clip.flac"
    say "stop it:       bash $0 stop"
    echo "export PULSE_SERVER=$PULSE_SERVER"
    ;;
  stop)
    stop_daemon
    ;;
  status)
    if answering; then echo "running: PULSE_SERVER=$PULSE_SERVER"; else echo "not running"; exit 1; fi
    ;;
  add-sink)
    [ -n "${2:-}" ] || { echo "usage: $0 add-sink NAME [RATE] [CHANNELS] [DESCRIPTION]" >&2; exit 2; }
    add_sink "$2" "${3:-48000}" "${4:-2}" "${5:-$2}"
    ;;
  *)
    echo "usage: $0 [start|stop|status|add-sink NAME [RATE] [CHANNELS] [DESCRIPTION]]" >&2
    exit 2
    ;;
esac
