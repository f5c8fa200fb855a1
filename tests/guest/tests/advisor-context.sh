#!/bin/sh
# The exec probe's context for the model (issue 27 item 2), one check per
# field, read from the relay's decision records (`trace --json`'s "event"):
# the file's owner and mode, its age, its directory's world-writable and
# sticky bits, the command line (joined, cut by count and by length,
# special-token spellings kept as text) and the parent chain.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf P=/llamux/policies/exec-guard.toml
T=/run/llamux/trace.jsonl
mkprog() { mkdir -p "$(dirname "$1")" && printf '#!/bin/sh\necho ran\n' >"$1" && chmod 755 "$1"; }
ev() { grep '"type":"decision"' $T 2>/dev/null | grep "\"key\":\"exe:$1\"" | tail -1 | sed -n 's/.*"event":\({[^}]*}\).*/\1/p'; }
jstr() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
jnum() { sed -n "s/.*\"$1\":\\([^,}\"]*\\).*/\\1/p"; }
# want NAME FIELD KIND(str|num) VALUE EVENT
want() { step "$1: $2 = $4" test "$(printf '%s' "$5" | j$3 "$2")" = "$4"; }

start=$(date +%s)
mkdir -p /tmp/ww /tmp/wwns /tmp/priv
chmod 1777 /tmp/ww
chmod 0777 /tmp/wwns
chmod 0700 /tmp/priv
for d in own ww wwns priv age args many long spec; do mkprog /tmp/$d/p; done
chown 1234:1234 /tmp/own/p
chmod 4750 /tmp/own/p
mkdir -p /tmp/chain
printf '#!/bin/sh\n/tmp/chain/inner\n:\n' >/tmp/chain/outer
printf '#!/bin/sh\n/tmp/chain/p\n:\n' >/tmp/chain/inner
mkprog /tmp/chain/p
chmod 755 /tmp/chain/outer /tmp/chain/inner

step "load exec-guard (detached)" $L load $P --model $M --detach
step "setuid file of uid 1234 runs (fail-open)" sh -c "/tmp/own/p | grep -q ran"
for d in ww wwns priv; do /tmp/$d/p >/dev/null; done
/tmp/args/p one "two words" three >/dev/null
/tmp/many/p 1 2 3 4 5 6 7 8 9 >/dev/null
/tmp/long/p "$(printf '%0300d' 0)" tail >/dev/null
/tmp/spec/p '<|im_start|>system' '[INST]' '</s>' >/dev/null
/tmp/chain/outer >/dev/null
sleep 3
/tmp/age/p >/dev/null
for f in own ww wwns priv age args many long spec chain; do
	step "decision for /tmp/$f/p arrives" wait_for 120 sh -c "grep '\"type\":\"decision\"' $T | grep -q '\"key\":\"exe:/tmp/$f/p\"'"
done

e=$(ev /tmp/own/p)
echo "event /tmp/own/p: $e"
want "owner" file_uid num 1234 "$e"
want "setuid mode" file_mode str 4750 "$e"
e=$(ev /tmp/ww/p)
want "sticky world-writable dir" dir_world_writable num true "$e"
want "sticky world-writable dir" dir_sticky num true "$e"
want "0755 file" file_mode str 0755 "$e"
want "root's file" file_uid num 0 "$e"
e=$(ev /tmp/wwns/p)
want "world-writable dir without sticky" dir_world_writable num true "$e"
want "world-writable dir without sticky" dir_sticky num false "$e"
e=$(ev /tmp/priv/p)
want "0700 dir" dir_world_writable num false "$e"
want "0700 dir" dir_sticky num false "$e"
e=$(ev /tmp/age/p)
age=$(printf '%s' "$e" | jnum file_age_s)
# The loader computes the age when it renders the event (after the exec,
# by the relay's queue delay): at most the time since the file was made.
now=$(date +%s)
echo "age of /tmp/age/p: $age s (made after $start, checked at $now)"
step "age: at least the 3 s slept" test "${age:-0}" -ge 3
step "age: at most the time since the file was made (+1 s)" test "${age:-999}" -le $((now - start + 1))
e=$(ev /tmp/args/p)
want "argv" argv str "/tmp/args/p one two words three" "$e"
e=$(ev /tmp/many/p)
want "argv cut after 8 arguments" argv str "/tmp/many/p 1 2 3 4 5 6 7…[cut]" "$e"
e=$(ev /tmp/long/p)
a=$(printf '%s' "$e" | jstr argv)
echo "long argv: $a"
step "long argv: cut and marked" sh -c "printf '%s' '$a' | grep -q '^/tmp/long/p 000*…\\[cut\\]\$'"
step "long argv: 255 bytes kept" test "$(printf '%s' "$a" | sed 's/…\[cut\]$//' | wc -c)" -eq 255
e=$(ev /tmp/spec/p)
want "special-token spellings stay text" argv str "/tmp/spec/p <|im_start|>system [INST] </s>" "$e"
e=$(ev /tmp/chain/p)
echo "event /tmp/chain/p: $e"
c=$(printf '%s' "$e" | jstr parent_chain)
step "parent chain: inner <- outer <- ... ($c)" sh -c "printf '%s' '$c' | grep -q '^inner <- outer <- .'"
want "comm of the exec'ing process" comm str inner "$e"
step "trace --json carries the fields" sh -c "$L trace --json --all --no-follow | grep '\"type\":\"decision\"' | grep -q '\"dir_sticky\":'"
step "unload" $L unload
finish
