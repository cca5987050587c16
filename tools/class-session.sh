#!/usr/bin/env bash
# A class-sized session on one machine, for measuring (docs/BENCHMARKS.md,
# "Debug or release"): the server, 25 idle clients and 5 viewers playing
# Video_2 in the terminal player (tmux windows of 200x50), every process
# from the binary BIN. Prints each viewer's summary line.
#
#   tools/class-session.sh target/release/ciphercast [PORT] [VIDEOS]
set -u
BIN=$1; PORT=${2:-8120}; VIDEOS=${3:-videos}
work=$(mktemp -d)
export XDG_CONFIG_HOME=$work
"$BIN" server --port "$PORT" --videos "$VIDEOS" --store none > "$work/server.log" 2>&1 &
server=$!
sleep 1
idle=()
for i in $(seq 1 25); do
  (sleep 120 | "$BIN" client --server "127.0.0.1:$PORT" --name "idle$i" --display none > /dev/null 2>&1) &
  idle+=($!)
done
sleep 2
session=class-$$
for v in 1 2 3 4 5; do
  if [ $v = 1 ]; then tmux new-session -d -s $session -x 200 -y 50 -n v1; else tmux new-window -t $session -n v$v; fi
  tmux send-keys -t $session:v$v "$BIN client --server 127.0.0.1:$PORT --name viewer$v --display terminal 2>/dev/null | tee $work/v$v.out" Enter
done
sleep 3
for v in 1 2 3 4 5; do tmux send-keys -t $session:v$v "2" Enter; done
sleep 1
for v in 1 2 3 4 5; do tmux send-keys -t $session:v$v "Video_2" Enter; done
for _ in $(seq 1 60); do
  [ "$(grep -l "^summary" "$work"/v*.out 2>/dev/null | wc -l)" -ge 5 ] && break
  sleep 1
done
for v in 1 2 3 4 5; do grep -a "^summary" "$work/v$v.out" | tail -1 | sed 's/\x1b\[[0-9;]*m//g'; done
for v in 1 2 3 4 5; do tmux send-keys -t $session:v$v "3" Enter; done
sleep 1
tmux kill-session -t $session 2>/dev/null
kill "$server" "${idle[@]}" 2>/dev/null
wait 2>/dev/null
rm -rf "$work"
