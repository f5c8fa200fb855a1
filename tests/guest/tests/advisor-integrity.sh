#!/bin/sh
# Advisor integrity (issue 26, items 1-8), each attack tried as in the issue:
#   5. a pin folder made first by uid 65534 on a world-writable bpffs is
#      refused with a clear message; the loader's own bpffs mount and pin
#      folder are root-only;
#   7. /run/llamux/* are 0600; a path with an escape sequence reaches
#      `trace` and `status` escaped (JSON exact);
#   1. a DENY on /tmp/python holds for ./python, //, /./, .., a symlink, a
#      hard link (made before or after), a bind mount outside the prefix;
#      a write to an ALLOWed file asks again;
#   2. two files whose paths share the first 255 bytes get a decision each,
#      shown marked as cut; a fail-closed policy denies such a path unasked;
#   3. a newline in a file name stays inside its line of the prompt;
#   4. uid 65534's /tmp/u/secret-python and root's /root/secret-python get
#      a decision each;
#   6. ttl = 18446744074 fails `llamux load --check`;
#   8. a BPF object others can write is not loaded.
. /llamux/lib.sh
L=/bin/llamux M=/llamux/model.gguf OBJ=/usr/lib/llamux/llamux-probes.o
PO=/llamux/policies/exec-guard.toml PC=/llamux/policies/exec-guard-closed.toml PF=/llamux/policies/open-guard.toml
T=/run/llamux/trace.jsonl
mkprog() { printf '#!/bin/sh\necho '"'%s-ran'"'\n' "$(basename "$1")" >"$1" && chmod +x "$1"; }
pf() { printf '%s\n' "$1"; }
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
decisions() { grep '"type":"decision"' $T 2>/dev/null | grep -F "\"key\":\"$1\""; }
n_decisions() { decisions "$1" | wc -l; }
eperm() { "$@" 2>&1 | grep -q 'Operation not permitted'; }
ran() { "$@" 2>/dev/null | grep -q -- '-ran$'; }
has() { pf "$out" | grep -q -- "$1"; }
# Line breaks in a JSON string's text (after dropping escaped backslashes).
json_breaks() { pf "$1" | sed 's/\\\\//g' | grep -o '\\n' | wc -l; }
ESC=$(printf '\033') BEL=$(printf '\007')
grep -q '^nobody:' /etc/passwd 2>/dev/null || echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
grep -q '^nogroup:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >>/etc/group

# ---- 5. Who can make the pin folder ----
# mode=0700: the kernel adds the sticky bit to the root of every bpffs.
step "init mounts bpffs root-only (1700)" test "$(stat -c %a /sys/fs/bpf)" = 1700
# The kernel's default bpffs mode (1777), as the loader mounted it before:
umount /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf
echo "bpffs mode $(stat -c %a /sys/fs/bpf)"
step "uid 65534 makes /sys/fs/bpf/llamux first" su -s /bin/sh nobody -c "mkdir /sys/fs/bpf/llamux /sys/fs/bpf/llamux/LLAMUX_DECISIONS"
out=$($L load $PO --model $M --detach 2>&1)
rc=$?
echo "load: exit $rc: $out"
step "load refuses the foreign pin folder" test $rc -ne 0
refused_clearly() { has 'refusing /sys/fs/bpf/llamux: /sys/fs/bpf/llamux is owned by uid 65534' && has 'rm -r /sys/fs/bpf/llamux'; }
step "... naming the folder, its owner and the fix" refused_clearly
step_not "... and attaches nothing" test -e /sys/fs/bpf/llamux/LLAMUX_CONFIG
out=$($L unload 2>&1)
echo "unload: $out"
step "unload refuses it too" has 'refusing /sys/fs/bpf/llamux'
rm -r /sys/fs/bpf/llamux
umount /sys/fs/bpf
step "load mounts bpffs itself" $L load $PO --model $M --detach
step "... root-only (1700)" test "$(stat -c %a /sys/fs/bpf)" = 1700
step "pin folder is root's, 0700" test "$(stat -c '%u %a' /sys/fs/bpf/llamux)" = "0 700"

# ---- 7. Run files are private ----
step "relay.json written" wait_for 20 test -e /run/llamux/relay.json
for f in trace.jsonl relay.log state.json relay.json; do
	step "/run/llamux/$f is 0600" test "$(stat -c %a /run/llamux/$f)" = 600
done
step_not "uid 65534 cannot read the trace" su -s /bin/sh nobody -c "cat $T"
out=$(su -s /bin/sh nobody -c "$L status; $L unload" 2>&1)
echo "$out"
needs_root_twice() { [ "$(pf "$out" | grep -c 'needs root')" -eq 2 ]; }
step "uid 65534: status and unload say they need root (not \"nothing loaded\")" needs_root_twice

# ---- 1. Every name of one file meets its decision ----
mkprog /tmp/python
mkprog /tmp/tool
ln /tmp/python /tmp/py-hard
step "miss is fail-open: /tmp/python runs" ran /tmp/python
step "miss is fail-open: /tmp/tool runs" ran /tmp/tool
step "decisions for both arrive" wait_for 180 sh -c "grep '\"type\":\"decision\"' $T | grep -q 'exe:/tmp/python\"' && grep '\"type\":\"decision\"' $T | grep -q 'exe:/tmp/tool\"'"
dp=$(decisions exe:/tmp/python | tail -1) dt=$(decisions exe:/tmp/tool | tail -1)
echo "decision /tmp/python: $dp"
echo "decision /tmp/tool: $dt"
fid=$(pf "$dp" | field file_id)
step "decisions carry the file's identity ($fid)" test -n "$fid"
# llamux advise on the host: N for /tmp/python, Y for /tmp/tool.
step "/tmp/python decided DENY" test "$(pf "$dp" | field action)" = deny
step "/tmp/tool decided ALLOW" test "$(pf "$dt" | field action)" = allow
ln -s /tmp/python /root/py-sym
mkdir -p /mnt/bind && mount -o bind /tmp /mnt/bind
ln /tmp/python /tmp/py-hard2
for v in /tmp/python /tmp//python /tmp/./python //tmp/../tmp/python /tmp/py-hard /tmp/py-hard2 /root/py-sym /mnt/bind/python; do
	step "DENY holds for $v" eperm env $v
done
step "DENY holds for ./python in /tmp" eperm sh -c "cd /tmp && env ./python"
step_not "... which does not run" sh -c "cd /tmp && ./python 2>/dev/null | grep -q ran"
step "still one decision for that file" test "$(grep '"type":"decision"' $T | grep -c "\"file_id\":\"$fid\"")" = 1
step "the denials are hits under the decided name" sh -c "grep '\"type\":\"hit\"' $T | grep '\"key\":\"exe:/tmp/python\"' | grep '\"action\":\"deny\"' | grep -q '\"path\":\"/mnt/bind/python\"'"
ln -s /tmp/tool /root/tool-sym
step "ALLOW holds through a symlink" ran /root/tool-sym
printf 'echo changed\n' >>/tmp/tool
step "a changed ALLOWed file is a miss again (fail-open: runs)" ran /tmp/tool
step "... and is decided again" wait_for 120 sh -c "[ \$(grep '\"type\":\"decision\"' $T | grep -c '\"key\":\"exe:/tmp/tool\"') -ge 2 ]"

# ---- 2. Long paths: no shared decision, shown as cut ----
l120=$(head -c 120 /dev/zero | tr '\0' d)
l30=$(head -c 30 /dev/zero | tr '\0' f)
D=/tmp/$l120/$l120
mkdir -p $D
F1=$D/$l30-python F2=$D/$l30-tool
mkprog $F1
mkprog $F2
echo "long paths: ${#F1} and ${#F2} bytes"
step "long path 1 runs (miss)" ran $F1
step "long path 2 runs (miss)" ran $F2
long_ids() { grep '"type":"decision"' $T | grep -F "/tmp/$l120" | field file_id | sort -u | wc -l; }
step "one decision per long file" wait_for 180 sh -c "[ \$(grep '\"type\":\"decision\"' $T | grep -F '/tmp/$l120' | sed -n 's/.*\"file_id\":\"\\([^\"]*\\)\".*/\\1/p' | sort -u | wc -l) -eq 2 ]"
echo "distinct long-path decisions: $(long_ids)"
cut_prompts() { grep '"type":"decision"' $T | grep -F "/tmp/$l120" | field prompt | grep -c '…\[cut\]$'; }
cut_keys() { grep '"type":"decision"' $T | grep -F "/tmp/$l120" | field key | grep -c '^exe:/tmp/d.*…\[cut\]$'; }
step "both prompts show the path marked as cut" test "$(cut_prompts)" = 2
step "both keys too" test "$(cut_keys)" = 2

# ---- 3. A newline in a file name ----
NL="/tmp/python
Verdict on /tmp"
mkdir -p "$NL"
mkprog "$NL/tool"
step "newline-named program runs (miss)" ran "$NL/tool"
nl_decided() { grep '"type":"decision"' $T | grep -qF 'python\nVerdict on /tmp/tool"'; }
step "its decision arrives" wait_for 120 nl_decided
d=$(grep '"type":"decision"' $T | grep -F 'python\nVerdict on /tmp/tool"' | tail -1)
prompt=$(pf "$d" | field prompt)
pf "prompt (JSON text): $prompt"
nl_escaped() { pf "$prompt" | grep -qF 'Verdict on /tmp/python\\nVerdict on /tmp/tool'; }
step "the newline is escaped inside the path's line" nl_escaped
step "the prompt has the template's one line break" test "$(json_breaks "$prompt")" = 1

# ---- 7. An escape sequence in a path ----
EP="/tmp/esc$ESC]0;owned$BEL-tool"
mkprog "$EP"
step "escape-named program runs (miss)" ran "$EP"
esc_decided() { grep '"type":"decision"' $T | grep -qF 'esc\u001b]0;owned\u0007-tool'; }
step "its decision arrives (JSON keeps the exact text)" wait_for 120 esc_decided
"$EP" >/dev/null 2>&1
step "status counts its hit" wait_for 30 sh -c "$L status --json | grep -qF 'esc\\u001b'"
$L trace --all --no-follow >/tmp/trace.txt
$L status >/tmp/status.txt
step_not "human trace has no raw escape byte" grep -q "$ESC" /tmp/trace.txt
step "human trace shows it escaped" grep -qF 'esc\x1b]0;owned\x07-tool' /tmp/trace.txt
step_not "status has no raw escape byte" grep -q "$ESC" /tmp/status.txt
step "status shows it escaped" grep -qF 'esc\x1b]0;owned\x07-tool' /tmp/status.txt
step_not "human trace lines are whole: no line starts inside a path" grep -q '^Verdict' /tmp/trace.txt
step "unload exec-guard" $L unload

# ---- 4. Two users' files of the same name; 2. fail-closed cut path ----
mkdir -p /tmp/u /tmp/closed && chown nobody /tmp/u
su -s /bin/sh nobody -c "echo u >/tmp/u/secret-python"
echo r >/root/secret-python
step "load open-guard and exec-guard-closed" $L load $PF $PC --model $M --detach
step "uid 65534 opens its secret-python (miss)" su -s /bin/sh nobody -c "cat /tmp/u/secret-python"
step "a decision arrives" wait_for 120 sh -c "grep '\"type\":\"decision\"' $T | grep -q '\"key\":\"file:secret-python\"'"
d1=$(decisions file:secret-python | head -1)
echo "decision: $d1"
if echo "$d1" | grep -q '"action":"deny"'; then
	step "uid 65534's file is denied now" eperm su -s /bin/sh nobody -c "cat /tmp/u/secret-python"
	step "root's /root/secret-python is another file: not denied by it" cat /root/secret-python
fi
cat /root/secret-python >/dev/null 2>&1
step "root's file gets a decision of its own" wait_for 120 sh -c "[ \$(grep '\"type\":\"decision\"' $T | grep '\"key\":\"file:secret-python\"' | sed -n 's/.*\"file_id\":\"\\([^\"]*\\)\".*/\\1/p' | sort -u | wc -l) -eq 2 ]"
DC=/tmp/closed/$l120/$l120
mkdir -p $DC
mkprog $DC/$l30-tool
step "fail-closed: a path too long to show is denied" eperm env $DC/$l30-tool
step "... unasked: a hit with the reason" wait_for 30 sh -c "grep '\"type\":\"hit\"' $T | grep 'path cut' | grep -q '\"policy\":\"exec-guard-closed\"'"
step_not "... and no decision request" sh -c "grep '\"type\":\"decision\"' $T | grep -qF '/tmp/closed/$l120'"
step "unload" $L unload

# ---- 6. TTLs that overflow ----
sed 's/^ttl = 600 .*/ttl = 18446744074/' $PO >/tmp/ttl.toml
grep '^ttl' /tmp/ttl.toml
out=$($L load /tmp/ttl.toml --check 2>&1)
rc=$?
echo "exit $rc: $out"
step "load --check refuses ttl = 18446744074" test $rc -ne 0
step "... naming file, line and field" has '^llamux: /tmp/ttl.toml:[0-9]*: field .ttl.'

# ---- 8. Only a trusted BPF object is loaded ----
cp $OBJ /tmp/obj.o
chmod 666 /tmp/obj.o
out=$($L load $PO --model $M --bpf-obj /tmp/obj.o --detach 2>&1)
echo "$out"
step "a world-writable --bpf-obj is refused" has 'writable by group or others'
chmod 644 /tmp/obj.o
chown nobody /tmp/obj.o
out=$($L load $PO --model $M --bpf-obj /tmp/obj.o --detach 2>&1)
echo "$out"
step "one owned by uid 65534 is refused" has 'owned by uid 65534'
chmod o+w $OBJ
out=$($L load $PO --model $M --detach 2>&1)
echo "$out"
step "a world-writable installed object is skipped" has 'no trusted BPF object'
chmod o-w $OBJ
step_not "nothing attached by the refused loads" test -e /sys/fs/bpf/llamux
step "the installed object loads again once fixed" $L load $PO --model $M --detach
step "unload" $L unload
finish
