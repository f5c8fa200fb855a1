//! `llamux`: the Llamux user-space tool.
//!
//! Engine commands run the same engine the kernel module hosts, in user
//! space (tests, benchmarks, machines without the module).

// This binary's print macros go through `stdio` (a macro defined here
// shadows std's in every module below): a closed or full stdout is an exit,
// never a panic.
macro_rules! println {
    () => { $crate::stdio::out(format_args!(""), true) };
    ($($t:tt)*) => { $crate::stdio::out(format_args!($($t)*), true) };
}
#[allow(unused_macros)]
macro_rules! print {
    ($($t:tt)*) => { $crate::stdio::out(format_args!($($t)*), false) };
}
macro_rules! eprintln {
    () => { $crate::stdio::err(format_args!(""), true) };
    ($($t:tt)*) => { $crate::stdio::err(format_args!($($t)*), true) };
}
#[allow(unused_macros)]
macro_rules! eprint {
    ($($t:tt)*) => { $crate::stdio::err(format_args!($($t)*), false) };
}

mod bench;
mod bpf;
mod bpf_btf;
mod doctor;
mod engine_cmds;
mod eval;
mod fsafe;
mod kernel_cmds;
mod policy_advise;
mod pool;
mod relay;
mod service;
mod stdio;
mod trace;

use llamux::{event, policy};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use llamux_engine::quant::Isa;
use llamux_engine::sample::Param;

#[derive(Parser)]
#[command(
    name = "llamux",
    version,
    about = "Llamux: a LLaMA engine for the Linux kernel, and its user-space tool"
)]
struct Cli {
    /// Use the scalar reference kernels (no AVX2), e.g. to compare.
    #[arg(long, global = true)]
    no_simd: bool,
    /// Cap the kernels at this level (default: the best this CPU has).
    /// avx2 and avx512 also repack Q4_K and Q6_K matrices at load (the file
    /// is read into memory, not mapped) for their 8-row kernels; scalar keeps
    /// the file's layout and a read-only mapping.
    #[arg(long, global = true, value_enum)]
    isa: Option<IsaArg>,
    /// Keep the file's row-major layout at every level (the kernels whose
    /// float order is llama.cpp's AVX2 one), e.g. to compare.
    #[arg(long, global = true)]
    no_repack: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IsaArg {
    Scalar,
    Avx2,
    Avx512,
}

#[derive(Args, Clone)]
pub struct SampleArgs {
    /// Tokens to generate at most.
    #[arg(short = 'n', long = "n-predict", default_value_t = 32)]
    pub n_predict: usize,
    /// 0 means greedy (argmax); 0 to 100.
    #[arg(long, default_value_t = 0.0, value_parser = engine_cmds::sample_arg::<f32>(Param::Temperature))]
    pub temperature: f32,
    /// 0 disables top-k; 0 to 1048576.
    #[arg(long, default_value_t = 40, value_parser = engine_cmds::sample_count_arg(Param::TopK))]
    pub top_k: usize,
    /// 1.0 disables top-p; 0 to 1.
    #[arg(long, default_value_t = 0.95, value_parser = engine_cmds::sample_arg::<f32>(Param::TopP))]
    pub top_p: f32,
    /// 1.0 disables the repetition penalty; above 0, at most 100.
    #[arg(long, default_value_t = 1.0, value_parser = engine_cmds::sample_arg::<f32>(Param::RepeatPenalty))]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over; 0 to 1048576.
    #[arg(long, default_value_t = 64, value_parser = engine_cmds::sample_count_arg(Param::PenaltyLastN))]
    pub repeat_last_n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
}

#[derive(Args, Clone)]
pub struct EngineArgs {
    /// GGUF model file.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Worker threads, 1 to 1024 (default: all cores).
    #[arg(short = 't', long, value_parser = engine_cmds::threads_arg)]
    pub threads: Option<usize>,
    /// KV cache positions.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Keep the KV cache in f16 (half the memory).
    #[arg(long)]
    pub kv_f16: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a completion in user space.
    Run {
        #[command(flatten)]
        engine: EngineArgs,
        #[arg(short, long, conflicts_with = "prompt_file")]
        prompt: Option<String>,
        #[arg(long)]
        prompt_file: Option<PathBuf>,
        #[command(flatten)]
        sample: SampleArgs,
        /// Wrap the prompt in the model's instruction template
        /// (CodeLlama-Instruct: `<s>[INST] ... [/INST]`). The prompt stays
        /// plain text inside it.
        #[arg(long)]
        instruct: bool,
        /// Read special-token texts in the prompt ("<s>", "<|im_end|>") as
        /// those tokens, as llama.cpp does (default: plain text).
        #[arg(long)]
        special: bool,
        /// Print one JSON object (ids, text, timings) instead of streaming.
        #[arg(long)]
        json: bool,
    },
    /// Print the token ids of TEXT (comma-separated).
    Tokenize {
        #[arg(short, long)]
        model: PathBuf,
        text: String,
        /// Do not prepend BOS.
        #[arg(long)]
        no_bos: bool,
        /// Read special-token texts ("<s>", "<|im_end|>") as those tokens,
        /// as llama.cpp does for prompts (default: plain text).
        #[arg(long)]
        special: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run TOKENS as one prompt and write the logits of every position
    /// (little-endian f32, [n_tokens x n_vocab]).
    Logits {
        #[command(flatten)]
        engine: EngineArgs,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',')]
        tokens: Vec<u32>,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Prefill and decode speed (tokens/s), measured like llama-bench.
    Bench {
        #[arg(short, long)]
        model: PathBuf,
        /// Threads, 1 to 1024 (default: all cores).
        #[arg(short = 't', long, value_parser = engine_cmds::threads_arg)]
        threads: Option<usize>,
        /// Prompt tokens of the prefill test (0 skips it).
        #[arg(short = 'p', long, default_value_t = 16)]
        n_prompt: usize,
        /// Tokens of the decode test (0 skips it).
        #[arg(short = 'n', long, default_value_t = 32)]
        n_gen: usize,
        /// Repetitions of each test.
        #[arg(short = 'r', long, default_value_t = 5)]
        reps: usize,
        /// Also measure streaming-read memory bandwidth on the same number
        /// of threads right before and after each decode repetition, and
        /// report decode's share of it (the weights are read once per token).
        #[arg(long)]
        bandwidth: bool,
        /// Run the same protocol through llamux.ko as well (/proc/llamux/bench,
        /// the model loaded there), interleaved over --rounds, and print the
        /// kernel/user ratios of the medians.
        #[arg(long, conflicts_with = "bandwidth")]
        kernel: bool,
        /// Rounds of the --kernel comparison (user and kernel in each).
        #[arg(long, default_value_t = 3, requires = "kernel")]
        rounds: usize,
        #[arg(long)]
        json: bool,
    },
    /// Metadata, tensor table and memory needs of a model.
    Info {
        #[arg(short, long)]
        model: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Ask the model inside llamux.ko: write PROMPT to /proc/llamux/generate
    /// and stream the completion (root; the module must have a model).
    Query {
        prompt: String,
        /// Sampling for this and later requests, e.g. "temperature=0 n_predict=64".
        #[arg(long)]
        params: Option<String>,
        /// Wrap the prompt in the model's instruction template.
        #[arg(long)]
        instruct: bool,
        /// Send special-token texts in the prompt ("<s>", "<|im_end|>"):
        /// the module reads them as those tokens. Without it such a prompt
        /// is refused.
        #[arg(long)]
        special: bool,
        /// One JSON object: text, generated ids, in-kernel tokens/s.
        #[arg(long)]
        json: bool,
    },
    /// Validate POLICY files, attach their probes and relay events to the
    /// advisor; decisions go to /sys/fs/bpf/llamux/. Runs until stopped.
    Load {
        #[arg(required = true)]
        policies: Vec<PathBuf>,
        /// GGUF model for the user-space advisor (optional when llamux.ko
        /// is loaded with a model).
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// Pin the programs and keep relaying in the background.
        #[arg(long)]
        detach: bool,
        /// BPF object (default: next to the binary, /usr/lib/llamux, the build cache).
        #[arg(long)]
        bpf_obj: Option<PathBuf>,
        #[arg(short = 't', long, value_parser = engine_cmds::threads_arg)]
        threads: Option<usize>,
        /// Advisor KV cache positions per policy.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        /// Only validate the policies (nothing is attached).
        #[arg(long)]
        check: bool,
        /// Who runs the model: the kernel module (/proc/llamux/advise) when
        /// it has a model, falling back to user space on errors (auto).
        #[arg(long, value_enum, default_value_t = policy_advise::AdvisorChoice::Auto)]
        advisor: policy_advise::AdvisorChoice,
    },
    /// Can this machine run Llamux? Kernel (version, CONFIG_RUST, modules,
    /// signing, lockdown, BPF LSM, BTF, bpffs), CPU kernels, memory for a
    /// model, the module's state: ok/warn/fail and what to do. Exit 1 when
    /// a check fails.
    Doctor {
        /// Also check this GGUF model: the engine takes it, and it fits in
        /// the memory available.
        #[arg(short, long)]
        model: Option<PathBuf>,
        /// KV cache positions to count for the model.
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        #[arg(long)]
        json: bool,
    },
    /// Stop the relay and remove every program, link and pinned map.
    Unload,
    /// Loaded policies, programs, maps and counters.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Live decisions (time, policy, key, event, answer, scores, latency).
    Trace {
        #[arg(long)]
        json: bool,
        /// Start from the first record instead of new ones.
        #[arg(long)]
        all: bool,
        /// Print what is there and exit.
        #[arg(long)]
        no_follow: bool,
        /// Exit after N records.
        #[arg(short = 'n', long)]
        count: Option<usize>,
        /// Exit after SECONDS.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// The decision a policy's advisor makes for one event, in user space
    /// (or in the kernel module with --advisor kernel).
    Advise {
        /// GGUF model (needed unless --advisor kernel).
        #[arg(short, long)]
        model: Option<PathBuf>,
        #[arg(short, long)]
        policy: PathBuf,
        /// The event's fields as a JSON object (as in `trace --json`'s "event").
        #[arg(short, long)]
        event: String,
        #[arg(short = 't', long, value_parser = engine_cmds::threads_arg)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 512)]
        ctx: usize,
        #[arg(long)]
        json: bool,
        /// Who runs the model: user space (default), the kernel module
        /// (/proc/llamux/advise), or auto (kernel if loaded, else user).
        #[arg(long, value_enum, default_value_t = policy_advise::AdvisorChoice::User)]
        advisor: policy_advise::AdvisorChoice,
    },
    /// A policy's decisions on a labelled event set (tests/eval/*.jsonl):
    /// accuracy, recall, confusion, margins, latency, static baselines.
    Eval {
        /// GGUF model (not needed for --advisor kernel or baselines only).
        #[arg(short, long)]
        model: Option<PathBuf>,
        #[arg(short, long)]
        policy: PathBuf,
        /// JSON lines: event fields + "label" + "split".
        #[arg(long)]
        events: PathBuf,
        #[arg(long, value_enum, default_value_t = eval::Split::All)]
        split: eval::Split,
        #[arg(short = 't', long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 1024)]
        ctx: usize,
        /// user (default) or kernel (/proc/llamux/advise).
        #[arg(long, value_enum, default_value_t = policy_advise::AdvisorChoice::User)]
        advisor: policy_advise::AdvisorChoice,
        /// Also score a static rule on the same events (repeatable):
        /// default, allow, deny, tmp-rule, tools, www-data, cpu50, preempt50.
        #[arg(long)]
        baseline: Vec<String>,
        /// Override the policy's margin threshold (nats).
        #[arg(long)]
        margin: Option<f32>,
        /// Drop the optional fields today's probes do not fill (argv, owner...).
        #[arg(long)]
        probe_fields_only: bool,
        /// List every decision, not only the wrong ones.
        #[arg(short, long)]
        verbose: bool,
        /// Report progress on stderr every 10 events.
        #[arg(long)]
        progress: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run the relay on every policy in /etc/llamux/policies.d with the model
    /// named in /etc/llamux/llamux.toml, in the foreground (the systemd unit).
    Service {
        /// The configuration file (model, advisor, policy folder).
        #[arg(long, default_value = service::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only validate the configuration and the policies.
        #[arg(long)]
        check: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (llamux.1, llamux-SUBCOMMAND.1) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(isa) = cli.isa {
        llamux_engine::quant::set_max_isa(match isa {
            IsaArg::Scalar => Isa::Scalar,
            IsaArg::Avx2 => Isa::Avx2,
            IsaArg::Avx512 => Isa::Avx512,
        });
    }
    if cli.no_simd {
        llamux_engine::quant::set_simd(false);
    }
    if cli.no_repack {
        engine_cmds::set_repack(false);
    }
    let r: anyhow::Result<()> = match cli.cmd {
        Cmd::Bench {
            model,
            threads,
            n_prompt,
            n_gen,
            reps,
            kernel: true,
            rounds,
            json,
            ..
        } => bench::bench_kernel(&bench::KernelBenchOpts {
            model: &model,
            threads,
            n_prompt,
            n_gen,
            reps,
            rounds,
            json,
        }),
        Cmd::Bench {
            model,
            threads,
            n_prompt,
            n_gen,
            reps,
            bandwidth,
            kernel: false,
            json,
            ..
        } => bench::bench(&bench::BenchOpts {
            model: &model,
            threads,
            n_prompt,
            n_gen,
            reps,
            bandwidth,
            json,
        }),
        Cmd::Run {
            engine,
            prompt,
            prompt_file,
            sample,
            instruct,
            special,
            json,
        } => engine_cmds::run(
            &engine,
            prompt,
            prompt_file,
            &sample,
            instruct,
            special,
            json,
        ),
        Cmd::Tokenize {
            model,
            text,
            no_bos,
            special,
            json,
        } => engine_cmds::tokenize(&model, &text, !no_bos, special, json),
        Cmd::Logits {
            engine,
            tokens,
            out,
        } => engine_cmds::logits(&engine, &tokens, &out),
        Cmd::Info { model, json } => engine_cmds::info(&model, json),
        Cmd::Query {
            prompt,
            params,
            instruct,
            special,
            json,
        } => kernel_cmds::query(&prompt, params.as_deref(), instruct, special, json),
        Cmd::Load {
            policies,
            check: true,
            ..
        } => bpf::validate(&policies).map(|p| {
            for p in p {
                println!(
                    "{}: ok ({} policy `{}`, {} answers)",
                    p.file.display(),
                    p.hook.name(),
                    p.name,
                    p.answers.len()
                );
            }
        }),
        Cmd::Load {
            policies,
            model,
            detach,
            bpf_obj,
            threads,
            ctx,
            check: false,
            advisor,
        } => bpf::load(bpf::LoadOpts {
            policies,
            model,
            detach,
            bpf_obj,
            threads,
            ctx,
            advisor,
        }),
        Cmd::Doctor { model, ctx, json } => doctor::doctor(model.as_deref(), ctx, json),
        Cmd::Unload => bpf::unload(),
        Cmd::Status { json } => bpf::status(json),
        Cmd::Trace {
            json,
            all,
            no_follow,
            count,
            timeout,
        } => trace::follow(json, all, !no_follow, count, timeout),
        Cmd::Eval {
            model,
            policy,
            events,
            split,
            threads,
            ctx,
            advisor,
            baseline,
            margin,
            probe_fields_only,
            verbose,
            progress,
            json,
        } => eval::run(&eval::EvalOpts {
            model,
            policy,
            events,
            split,
            threads,
            ctx,
            advisor,
            json,
            baselines: baseline,
            margin,
            probe_fields_only,
            verbose,
            progress,
        }),
        Cmd::Advise {
            model,
            policy,
            event,
            threads,
            ctx,
            json,
            advisor,
        } => bpf::advise_cmd(
            model.as_deref(),
            advisor,
            &policy,
            &event,
            threads,
            ctx,
            json,
        ),
        Cmd::Service { config, check } => service::run(&config, check),
        Cmd::Completions { shell } => service::completions(Cli::command(), shell),
        Cmd::Manpages { dir } => service::manpages(Cli::command(), &dir),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llamux: {e:#}");
            ExitCode::FAILURE
        }
    }
}
