"""The recipe contract: one pydantic model per stage section, every model forbidding unknown keys.

Precedence is defaults < recipe file < ``--set`` overrides (:mod:`.loader`). API keys never appear
here: a recipe names the *environment variable* that holds one (``teacher.api_key_env``). The
``sft:`` block is passed to ``trl.SFTConfig`` as it is; it is checked against TRL's own fields by
:mod:`tracesynth.stages.train.args`, not re-declared here.

This module declares and validates; it reads no file and runs no stage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tracesynth._ids import stable_hash


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HygieneConfig(Section):
    drop_figures: bool = True
    require_answer: bool = True
    require_boxed: bool = False
    # s1's data/filter.ipynb patterns besides figures: "![Image]", "p1." .. "p999.", **bold with a digit**
    s1_patterns: bool = False
    # [asy] figures kept where the problem's source (or metadata.source_type) contains one of these (s1: AIME)
    figures_allowed_from: list[str] = Field(default_factory=list)


class SourceConfig(Section):
    kind: Literal["jsonl", "parquet", "csv", "disk", "hub", "gym", "builtin"] = "jsonl"
    path: str | None = None
    name: str | None = None  # hub dataset, builtin set, or reasoning-gym task
    split: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    domain: str | None = None
    limit: int | None = None
    offset: int = 0
    shuffle: bool = False
    shuffle_buffer: int = Field(10_000, ge=1)  # parquet/csv/hub: seeded buffer shuffle (exact for jsonl/disk/gym)
    seed: int = 0
    weight: float = Field(1.0, ge=0)  # mixing weight across several sources
    size: int | None = None  # reasoning-gym: how many problems to generate
    config: dict[str, Any] = Field(default_factory=dict)  # reasoning-gym task config (hub: load_dataset kwargs)
    hygiene: HygieneConfig = Field(default_factory=HygieneConfig)
    # keep only rows whose column holds this value (or one of these values): NuminaMath's {source: amc_aime}
    where: dict[str, Any] = Field(default_factory=dict)
    # read only the first N rows that match `where`, before hygiene, difficulty and limit (SkyThought's --end)
    head: int | None = Field(None, ge=0)
    # the prompt template of this source's problems (default: prompt.template): SkyThought's per-task prompts
    template: str | None = None
    difficulty: DifficultyConfig | None = None


class DifficultyConfig(Section):
    """Difficulty labels joined by question text from another set (Sky-T1: NovaSky-AI/labeled_numina_difficulty_859K);
    a row is kept when its label lies in [min, max]; rows without a label are dropped (counted)."""

    labels: SourceConfig  # the labelled set (its question column and this value column)
    value: str = "gpt_difficulty_parsed"
    min: float | None = None
    max: float | None = None


class PromptConfig(Section):
    template: str = "boxed_math"
    system: str | None = None


class SamplingConfig(Section):
    temperature: float | None = Field(0.6, ge=0)
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(32768, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


class PricesConfig(Section):
    """USD per million tokens. Reasoning tokens cost `output` unless `reasoning` is set."""

    input: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    output: float = Field(0.0, ge=0)
    reasoning: float | None = Field(None, ge=0)
    batch_discount: float = Field(0.5, ge=0, lt=1)


class SimConfig(Section):
    """Start the simulated teacher on 127.0.0.1 for this run (demo, tests, benchmarks)."""

    enabled: bool = False
    options: dict[str, Any] = Field(default_factory=dict)  # tracesynth.sim.options.SimOptions fields

    @field_validator("options")
    @classmethod
    def _sim_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        # checked when the recipe loads, so a bad persona is one line naming it, not a traceback at harvest
        from pydantic import ValidationError

        from tracesynth.sim.options import SimOptions

        try:
            SimOptions(**v)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"]) or "options"
            raise ValueError(f"{where}: {err['msg']}") from None
        return v


class BatchConfig(Section):
    """Batch mode (``teacher.mode: batch`` / ``harvest --batch``, see tracesynth.stages.harvest.batch).

    Per-file limits default to OpenAI's: a batch input file holds up to 50,000 requests and
    200 MB (the ``batches.create`` reference); other providers document their own.
    """

    max_requests: int = Field(50_000, ge=1)  # requests per batch input file
    max_bytes: int = Field(200_000_000, ge=1024)  # bytes per batch input file
    completion_window: str = "24h"
    base_url: str | None = None  # the files/batches API; None: teacher.base_urls[0]
    poll_s: float = Field(10.0, gt=0)  # first wait between polls (grows x1.5 up to poll_max_s)
    poll_max_s: float = Field(300.0, gt=0)
    wait: bool = True  # poll until every batch has ended; False: submit / ingest what is ready, then return


class TeacherConfig(Section):
    model: str = "deepseek-reasoner"
    base_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000/v1"])
    api_key_env: str | None = "TEACHER_API_KEY"
    concurrency: int = Field(64, ge=1)
    rpm: float | None = None
    rps: float | None = None
    tpm: float | None = None
    input_tpm: float | None = None
    output_tpm: float | None = None
    timeout_s: float = Field(1800.0, gt=0)
    n: int = Field(1, ge=1)
    api_n: bool = False  # ask for n choices in one call (where the endpoint supports it)
    # sample until verified (tracesynth.stages.harvest.until): ask one sample per problem, verify it as it
    # arrives, ask again only where no sample passed, up to this many samples per problem (replaces n)
    until_verified: int | None = Field(None, ge=1)
    keep_per_problem: int = Field(1, ge=1)  # with until_verified: stop asking a problem at this many passes
    max_attempts: int = Field(6, ge=1)
    item_retries: int = Field(3, ge=0)  # resume-time retries of a sample that ended in an item error
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    prices: PricesConfig | None = None  # None: look the model up in the shipped price table
    budget_usd: float | None = Field(None, ge=0)
    mode: Literal["online", "batch"] = "online"
    sim: SimConfig = Field(default_factory=SimConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    http: Literal["aiohttp", "openai"] = "aiohttp"  # transport; see tracesynth/teacher/http.py for why
    adaptive: bool = True  # AIMD: halve concurrency on 429, add one back per success
    backoff_base_s: float = Field(0.5, gt=0)  # jittered exponential backoff (when no Retry-After)
    backoff_max_s: float = Field(60.0, gt=0)
    bench_after: int = Field(5, ge=1)  # consecutive endpoint faults before an endpoint is benched
    bench_s: float = Field(30.0, ge=0)  # first bench length (doubles, up to 10 min)
    stop_grace_s: float = Field(30.0, ge=0)  # Ctrl-C / SIGTERM: how long to wait for requests in flight

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v.replace("_", "").isalnum() or v[0].isdigit()):
            raise ValueError("must be the NAME of an environment variable (e.g. TEACHER_API_KEY), not a key")
        return v

    @model_validator(mode="after")
    def _until_verified(self) -> TeacherConfig:
        k = self.until_verified
        if k is None:
            if self.keep_per_problem != 1:
                raise ValueError("keep_per_problem: only with until_verified (sample until verified)")
            return self
        if self.api_n:
            raise ValueError("until_verified: asks one sample at a time; set api_n: false")
        if self.keep_per_problem > k:
            raise ValueError(f"keep_per_problem ({self.keep_per_problem}) > until_verified ({k}): it could never stop")
        if self.n != 1:
            raise ValueError("until_verified replaces n (samples per problem): drop n, or until_verified")
        return self

    @property
    def samples_per_problem(self) -> int:
        """The most samples one problem gets: ``until_verified`` when set, else ``n``."""
        return self.until_verified or self.n


class VerifyConfig(Section):
    verifiers: list[str] = Field(default_factory=lambda: ["math"])
    by_domain: dict[str, list[str]] = Field(default_factory=dict)
    keep: Literal["all", "any", "majority"] = "all"
    workers: int = Field(2, ge=1)
    timeout_s: float = 5.0
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per-verifier settings


class DecontamConfig(Section):
    """Word n-gram decontamination against evaluation sets (see tracesynth.decontam)."""

    enabled: bool = True  # turning it off must be explicit; the dataset card says so
    shipped: bool = True  # check every shipped eval set (gsm8k:test, math500, aime24, amc23, humaneval)
    eval_sets: list[str] = Field(default_factory=list)  # more: builtin names ("math500", "gsm8k:test") or files
    n: int = Field(8, ge=1)
    allow: list[str] = Field(default_factory=list)  # phrases (>= n words) whose n-grams never count


class WeakModel(Section):
    """A weak model of s1's difficulty filter: the pool is harvested and verified with it in ``<run>/weak/<name>``
    (by ``tracesynth run``), and a problem it solves is dropped (``weak_solved``). Defaults as s1's
    data/bulk_inference.py: the bare question, temperature 0.05, up to 32,768 tokens."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    model: str
    base_urls: list[str] | None = None  # None: the teacher's
    api_key_env: str | None = None  # a self-hosted server needs none
    prices: PricesConfig | None = None  # None: the shipped table, or $0 for a self-hosted endpoint
    template: str = "bare"
    temperature: float = Field(0.05, ge=0)
    max_tokens: int = Field(32768, ge=1)
    budget_usd: float | None = Field(None, ge=0)


class PreselectRule(Section):
    """Problems chosen before any draw: from a source (substring of source / metadata.source_type)."""

    source: str
    passing: bool = True  # only problems with a passing sample (s1 required correctness only here)
    min_tokens: int | None = Field(None, ge=0)  # and a trace longer than this (s1: 5,600 for MATH)


class SelectConfig(Section):
    """s1-style selection to a target size (tracesynth.stages.curate.select). Without ``size`` nothing is sampled."""

    size: int | None = Field(None, ge=1)  # target number of problems (each with its per_problem traces)
    diversity: bool = True  # pick a domain uniformly, then a problem with weight 2^-(length rank); else uniform
    domain_key: str = "domain"  # or "metadata.<key>" (e.g. metadata.subject for MATH)
    domain_from_run: str | None = None  # labels from a run harvested with the classify_domain template
    weak_verifier: str | None = None  # s1: drop problems a weak model solved (its verdicts carry this verifier name)
    weak_runs: list[str] = Field(default_factory=list)  # s1: run folders of weak models, harvested and verified
    weak_models: list[WeakModel] = Field(default_factory=list)  # s1: weak models `tracesynth run` harvests itself
    pass_count: tuple[int, int] | None = None  # keep problems with lo..hi passing samples (LIMO: 1-3 of 32)
    pass_rate: tuple[float, float] | None = None  # same as a fraction of the problem's samples
    # s1's data/filter.ipynb, in its order: first every problem a rule preselects (s1: verified AIME and GPQA,
    # verified MATH with a trace over 5,600 tokens), then draws; after `benchmark_after` problems (s1: 700) the
    # domain is drawn with the benchmarks' domain mix instead of uniformly
    preselect: list[PreselectRule] = Field(default_factory=list)
    benchmark_after: int | None = Field(None, ge=0)
    # source substring -> its share: domain weight = sum of share x (that source's problems in the domain / its total)
    benchmark_mix: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _benchmark(self) -> SelectConfig:
        if self.benchmark_after is not None and not self.benchmark_mix:
            raise ValueError("benchmark_after: needs benchmark_mix (which sources' domain mix to draw from)")
        if any(v < 0 for v in self.benchmark_mix.values()):
            raise ValueError("benchmark_mix: shares must be >= 0")
        return self


class CurateConfig(Section):
    keep: Literal["passing", "solved", "all"] = "passing"
    exact_dedup: bool = True
    near_dedup: bool = False
    near_threshold: float = Field(0.8, gt=0, le=1)
    num_perm: int = Field(128, ge=16)  # MinHash permutations for near-dedup
    per_problem: int = Field(1, ge=1)
    pick: Literal["shortest", "longest", "random"] = "shortest"
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    tokenizer: str | None = None  # student tokenizer (tokenizer.json or its folder) for token lengths
    min_tokens: int | None = None
    max_tokens: int | None = None
    drop_truncated: bool = True
    select: SelectConfig = Field(default_factory=SelectConfig)
    seed: int = 0
    # the curation steps in order (None: every step of tracesynth.stages.curate.steps.DEFAULT_STEPS);
    # a custom step is "package.module:function" returning {sample id: reason}
    steps: list[str] | None = None


class DatasetConfig(Section):
    format: Literal["messages", "prompt_completion"] = "messages"
    reasoning: Literal["think_tags", "reasoning_content", "none"] = "think_tags"
    system_prompt: str | None = None
    license: str = "other"
    push_to_hub: str | None = None
    shard_rows: int = 50_000


class StudentConfig(Section):
    init: Literal["tiny"] | None = "tiny"
    model: str | None = None
    tiny: dict[str, Any] = Field(default_factory=dict)  # Qwen2Config overrides for the tiny student
    vocab_size: int = 512


class ComputeConfig(Section):
    """What training runs on, for the cost receipt (GPU-hours x price)."""

    gpus: int = 0
    gpu_type: str = "cpu"
    gpu_hour_usd: float = 0.0
    accelerate_config: str | None = None
    # CPU training/generation threads; None: 1 for a small model on a busy CPU, else torch's default
    cpu_threads: int | None = Field(None, ge=1)


class EvalConfig(Section):
    # the held-out problems; a list evaluates on several sets at once (s1: AIME24, MATH500, GPQA-Diamond),
    # reported together and per set (eval.json by_source)
    source: SourceConfig | list[SourceConfig] | None = None
    backend: Literal["local", "endpoint", "vllm"] = "local"
    base_url: str | None = None
    model: str | None = None
    n: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(32, ge=1)
    thinking_caps: list[int] = Field(default_factory=list)  # s1's budget forcing: at most this many thinking tokens
    wait_extensions: list[int] = Field(default_factory=list)
    verifiers: list[str] | None = None  # None: verify.verifiers without format (eval checks answers, not format)
    seed: int = 0
    # None: use what the student was trained with (its template.json); set to override (a mismatch warns)
    system_prompt: str | None = None
    thinking_delimiters: list[str] | None = None
    answer_prefix: str = ""  # appended after a forced end of thinking (s1 used "Final Answer:")
    wait_text: str = "Wait"
    dtype: str = "auto"  # local backend: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16
    baseline: bool = True  # also evaluate the untrained (tiny) or base student the same way
    api_key_env: str | None = None  # endpoint backend: the NAME of the env var holding the key
    concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(4, ge=1)  # endpoint backend: attempts per item (retries of transient errors)
    confidence: float = Field(0.95, gt=0, lt=1)
    revision: str | None = None  # a Hub model's revision (branch, tag or commit) to load and pin in eval.json
    # vllm backend: the command that starts vLLM's OpenAI server (None: the vLLM environment's python -m
    # vllm.entrypoints.openai.api_server), extra server arguments, and how long to wait for it
    vllm_command: list[str] | None = None
    vllm_args: list[str] = Field(default_factory=list)
    vllm_start_timeout_s: float = Field(600.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "budgets" in data:
            raise ValueError("eval.budgets is now eval.thinking_caps (in tracesynth a budget is money)")
        return data


class CostConfig(Section):
    """Expectations for `tracesynth cost` (an estimate before running; receipts use measurements).

    Training GPU-hours = 6 x params x trained tokens / (peak FLOP/s x MFU) / 3600, the standard
    dense-transformer estimate (forward + backward, attention FLOPs folded into the MFU).
    """

    # problems the sources hold, for `tracesynth cost` without reading them (hub sources offline); --problems wins
    problems: int | None = Field(None, ge=0)
    prompt_tokens: float | None = None  # per request; None: measured on the rendered prompts (accounting.tokens)
    completion_tokens: float = 4000.0  # per sample, reasoning included
    keep_rate: float = Field(0.7, gt=0, le=1)  # share of samples that survive verification + curation
    train_examples: int | None = None  # None: curate.select.size, else problems x n x keep_rate
    train_tokens_per_example: float | None = None  # None: prompt_tokens + completion_tokens
    student_params_b: float | None = None  # billions; None: counted from the tiny config
    peak_tflops: float = 989.0  # per GPU, dense bf16 (H100 SXM)
    mfu: float = Field(0.35, gt=0, le=1)
    epochs: float | None = None  # None: sft.num_train_epochs (TRL's default 3)
    eval_problems: int = 0
    eval_completion_tokens: float = 0.0
    classify_completion_tokens: float = 300.0  # a classify reply: a short reasoning, then the code


class PassConfig(Section):
    """One more model pass over the run's records (rewrite, classify: tracesynth.stages.ask): any
    OpenAI-compatible endpoint, its own prompt file, and the harvest's money rules (its own cap)."""

    enabled: bool = False
    model: str = "gpt-4o-mini"
    base_urls: list[str] = Field(default_factory=lambda: ["https://api.openai.com/v1"])
    api_key_env: str | None = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    prompt: str = ""  # a prompts/ name or a file (each pass ships its own default)
    concurrency: int = Field(16, ge=1)
    rpm: float | None = None
    tpm: float | None = None
    timeout_s: float = Field(600.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    item_retries: int = Field(1, ge=0)  # later runs ask a record again after this many item errors at most
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.0, top_p=None, max_tokens=4096)
    )
    prices: PricesConfig | None = None  # None: the shipped price table (self-hosted off provider URLs)
    budget_usd: float | None = Field(None, ge=0)
    http: Literal["aiohttp", "openai"] = "aiohttp"
    sim: SimConfig = Field(default_factory=SimConfig)  # a toy run: ask a simulator started for the pass instead

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v.replace("_", "").isalnum() or v[0].isdigit()):
            raise ValueError("must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not a key")
        return v


class RewriteConfig(PassConfig):
    """Sky-T1's reformatting: every kept trace rewritten into thought / solution blocks (tracesynth.stages.rewrite).
    Defaults as SkyThought's scripts/convert_format.py: gpt-4o-mini, temperature 0.7, max_tokens 16,384."""

    prompt: str = "sky_t1_rewrite"
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(temperature=0.7, top_p=None, max_tokens=16384)
    )


class ClassifyConfig(PassConfig):
    """s1's domain labels: one two-digit MSC code per problem (tracesynth.stages.classify; s1 data/featurization.py)."""

    prompt: str = "msc_classify"


class ReportConfig(Section):
    plots: bool = True


class Recipe(Section):
    name: str = "run"
    run_dir: str = "runs/run"
    source: SourceConfig | list[SourceConfig] = Field(default_factory=SourceConfig)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    sft: dict[str, Any] = Field(default_factory=dict)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    rewrite: RewriteConfig = Field(default_factory=RewriteConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> overrides

    @property
    def sources(self) -> list[SourceConfig]:
        return self.source if isinstance(self.source, list) else [self.source]

    def hash(self) -> str:
        """A stable hash of the resolved recipe (recorded in the manifest and dataset card)."""
        return stable_hash(self.model_dump(mode="json"))
