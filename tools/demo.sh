#!/usr/bin/env bash
# `make demo`: tmux with four panes — the server and three clients (alice,
# bob, carol) already joined — ready for an instructor to type into; and the
# server's live web page, opened in a browser when there is one.
#
# Environment: BIN (the ciphercast binary), PORT, VIDEOS; WEB (the page's
# address, default 127.0.0.1 on a free port); DEMO_TMUX_SOCKET
# (tmux -L socket name, default "ciphercast"); DEMO_DETACHED=1 to leave the
# session running in the background instead of attaching to it.
set -euo pipefail

BIN=${BIN:-target/release/ciphercast}
PORT=${PORT:-8005}
VIDEOS=${VIDEOS:-videos}
SOCKET=${DEMO_TMUX_SOCKET:-ciphercast}
SESSION=ciphercast
WEB=${WEB:-127.0.0.1:0}
tmux_() { tmux -L "$SOCKET" "$@"; }

if ! command -v tmux >/dev/null 2>&1; then
  echo "tmux is not installed: run 'make deps'" >&2
  exit 1
fi
if [ ! -x "$BIN" ]; then
  echo "$BIN is missing: run 'make build'" >&2
  exit 1
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

tmux_ kill-session -t "$SESSION" 2>/dev/null || true
tmux_ new-session -d -s "$SESSION" -x 200 -y 50 \
  "'$BIN' server --port $PORT --videos '$VIDEOS' --web '$WEB'; echo '(server stopped)'; read -r _"
tmux_ set-option -t "$SESSION" remain-on-exit on >/dev/null

# Wait until the server accepts connections before the clients join.
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done

# One client at a time, each waiting for the previous one to be connected,
# so they join in the order of the story: alice, bob, carol.
for name in alice bob carol; do
  pane=$(tmux_ split-window -P -F '#{pane_id}' -t "$SESSION" "'$BIN' client --server 127.0.0.1:$PORT --name $name")
  tmux_ select-layout -t "$SESSION" tiled >/dev/null
  for _ in $(seq 1 100); do
    if tmux_ capture-pane -p -t "$pane" | grep -q "Connected to"; then break; fi
    sleep 0.1
  done
done
tmux_ select-pane -t "$SESSION:0.1"

# The page's address, as the server printed it; a browser for it if this
# machine has a screen.
url=$(tmux_ capture-pane -p -J -S - -t "$SESSION:0.0" | grep -o 'web page listening on http://[^ ]*' | head -n 1 | cut -d' ' -f5)
if [ -n "$url" ]; then
  echo "the server's live page: $url"
  if [ "$(uname)" = Darwin ]; then
    open "$url" || true
  elif [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null 2>&1; then
    xdg-open "$url" >/dev/null 2>&1 || true
  fi
fi

if [ -n "${DEMO_DETACHED:-}" ]; then
  echo "demo running: tmux -L $SOCKET attach -t $SESSION"
else
  exec tmux -L "$SOCKET" attach -t "$SESSION"
fi
