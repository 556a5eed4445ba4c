"""`build_graph(config)`: the compiled router graph with real components, any of which can be injected instead."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from coe_router.config import ConfigError, OpenAIModel, RouterConfig, load_config
from coe_router.config.schema import QUERY_LEVEL_KINDS
from coe_router.graphs.two_stage import build_two_stage_graph
from coe_router.models.factory import build_models, used_models
from coe_router.persistence import checkpointer_from_config, with_router_serde
from coe_router.retrieval.encoder import Encoder, as_encoder, load_encoder
from coe_router.retrieval.identity import check_encoder
from coe_router.retrieval.memory_vectors import memory_vectors
from coe_router.retrieval.store import (
    ChromaServerError,
    ExampleStore,
    chroma_client,
    chroma_collection,
    read_examples,
)
from coe_router.routing.breaker import Breakers, BreakerSettings
from coe_router.routing.classifiers import TaskClassifier, build_classifier
from coe_router.routing.pool import ExpertPool
from coe_router.routing.query_router import KnnRouter, LiveQueryRouter
from coe_router.routing.task_map import expert_prices, task_map_from_config
from coe_router.routing.time_budget import AttemptPolicy
from coe_router.startup import collection_paused


def needs_examples(config: RouterConfig) -> bool:
    kind = config.classifier.kind
    return kind in ("knn", "hybrid") or (kind == "llm" and config.classifier.use_examples)


def _retriever_client(config: RouterConfig):
    """The Chroma client of the config's retriever: a local folder, or the server every replica shares."""
    spec = config.retriever
    folder = config.resolve_path(spec.persist_dir)
    if not spec.chroma_url and folder.exists() and not folder.is_dir():
        raise ConfigError(f"retriever.persist_dir: {folder} is a file, not a folder for the Chroma index")
    try:
        return chroma_client(url=spec.chroma_url) if spec.chroma_url else chroma_client(folder)
    except ChromaServerError as exc:
        raise ConfigError(f"retriever.chroma_url: {exc}") from None


def open_example_store(config: RouterConfig, encoder: Encoder | Embeddings | None = None,
                       progress: bool = False) -> ExampleStore:
    """The config's persistent collection, in a local folder or on a Chroma server (`retriever.chroma_url`, shared
    by every replica); filled from `retriever.examples` when it holds fewer examples. A collection another encoder
    built is refused (retrieval/identity.py)."""
    spec = config.retriever
    encoder = encoder or load_encoder(spec.embedding_package, spec.embedding_path)
    client = _retriever_client(config)
    store = ExampleStore(chroma_collection(spec.collection, None, client), encoder, client=client,
                         recheck_s=spec.check_every_s)
    check_encoder(store.collection, store.encoder, f"retriever.collection {spec.collection!r}",
                  "set a new retriever.collection name to index the examples with this encoder, or delete the "
                  "collection to rebuild it")
    if spec.examples:
        path = config.resolve_path(spec.examples)
        if not path.exists():
            raise ConfigError(f"retriever.examples: file not found: {path}")
        try:
            examples = read_examples(path)
        except (ValueError, UnicodeDecodeError) as exc:  # not JSONL, or rows without `question`/`category`
            raise ConfigError(f"retriever.examples: {str(exc).splitlines()[0]}") from None
        if store.count() < len(examples):
            store.add(examples, progress=progress)
    return store


def query_router_from_config(config: RouterConfig, encoder: Encoder | Embeddings | None,
                             progress: bool = False) -> LiveQueryRouter | None:
    """The live query-level router of `router.kind: knn` or `mf`: its memory is the recorded outcomes of the
    config's experts (columns of experts the config lacks are left out), embedded with the retriever's encoder once
    and kept beside the retriever's examples (retrieval/memory_vectors.py), so a restart reads the vectors back.
    `mf` trains its factorisation on that memory at start (seconds on CPU for thousands of questions)."""
    spec = config.router
    if spec.kind not in QUERY_LEVEL_KINDS:
        return None
    from coe_router.outcomes import read_outcomes

    for field in ("outcomes", "questions"):
        if not config.resolve_path(getattr(spec, field)).is_file():
            raise ConfigError(f"router.{field}: file not found: {config.resolve_path(getattr(spec, field))}")
    outcomes = read_outcomes(config.resolve_path(spec.outcomes), config.resolve_path(spec.questions))
    experts = [m for m in outcomes.models if m in config.experts]
    if not experts:
        raise ConfigError(f"router.outcomes: none of its columns {outcomes.models} is an expert of the config")
    memory = outcomes.select_models(experts).resolve_missing("drop")
    if memory.n == 0:
        raise ConfigError("router.outcomes: no question has an outcome for every expert")
    encoder = as_encoder(encoder or load_encoder(config.retriever.embedding_package, config.retriever.embedding_path))
    vectors = memory_vectors(_retriever_client(config), config.retriever.collection, encoder, memory.questions,
                             progress=progress)
    prices = expert_prices(config)
    known_prices = prices if all(e in prices for e in experts) else None
    knn = KnnRouter(experts, vectors, memory.scores, memory.categories.tolist(), spec.knn, known_prices)
    scorer = None
    if spec.kind == "mf":
        from coe_router.routing.mf_router import MatrixFactorizationRouter

        scorer = MatrixFactorizationRouter(experts, vectors, memory.scores, memory.categories.tolist(), spec.mf,
                                           known_prices)
    elif spec.kind == "learned":
        from coe_router.routing.learned_router import LearnedRouter

        scorer = LearnedRouter(experts, vectors, memory.scores, memory.categories.tolist(), spec.knn, spec.learned,
                               known_prices)
    return LiveQueryRouter(knn, encoder, prices, scorer)


def build_graph(
    config: RouterConfig | str | Path | None = None,
    *,
    models: dict[str, BaseChatModel] | None = None,
    store: ExampleStore | None = None,
    encoder: Encoder | Embeddings | None = None,
    classifier: TaskClassifier | None = None,
    checkpointer=None,
    progress: bool = False,
    pool: ExpertPool | None = None,
):
    """Compile the router for a config (a RouterConfig, a YAML path, or None for the embedded local default).

    Anything not injected is built from the config: chat models (llama.cpp or OpenAI-compatible), the MiniLM
    encoder (or pass any LangChain `Embeddings` as `encoder`), the Chroma example store (indexed on first use),
    the classifier and the live expert pool (`expert_pool`). A service passes the `pool` it owns, so every graph
    it builds routes over the one pool its admin API edits; the compiled graph keeps it as `graph.pool`.
    The garbage collector is paused while it builds (coe_router/startup.py).
    """
    with collection_paused():
        if not isinstance(config, RouterConfig):
            config = load_config(config)
        try:
            return _assemble(config, models, store, encoder, classifier, checkpointer, progress, pool)
        except ConfigError as exc:
            source = str(config.source) if config.source else ""
            raise (type(exc)(f"{source}: {exc}") if source and not str(exc).startswith(source) else exc) from None


def attempt_policies(config: RouterConfig) -> dict[str, AttemptPolicy]:
    """Each model's time budget and retries. In-process llama.cpp models cannot hang on a network: unbounded."""
    return {name: AttemptPolicy(spec.timeout_s, spec.answer_timeout_s, spec.max_retries)
            if isinstance(spec, OpenAIModel) else AttemptPolicy(math.inf, math.inf, 0)
            for name, spec in config.models.items()}


def expert_pool(config: RouterConfig, models: dict[str, BaseChatModel]) -> ExpertPool:
    """The live pool of the config's experts on `models`, with each model's attempt policy and circuit breaker."""
    return ExpertPool(config.experts, models, task_map_from_config(config), policies=attempt_policies(config),
                      breakers=Breakers({name: BreakerSettings(spec.allowed_fails, spec.cooldown_s)
                                         for name, spec in config.models.items()}))


def _assemble(config: RouterConfig, models, store, encoder, classifier, checkpointer, progress: bool,
              pool: ExpertPool | None = None):
    """build_graph's work; every part not given is built from the config."""
    encoder_loading = None
    if (store is None and needs_examples(config)) or config.router.kind in QUERY_LEVEL_KINDS:
        # MiniLM (torch) and the Chroma client load while the chat models (langchain-openai) are built: about a
        # second of a fresh start. A failure surfaces where the part is used (both are cached per process).
        with ThreadPoolExecutor(2, thread_name_prefix="coe-load") as background:
            background.submit(_retriever_client, config)
            if encoder is None:
                encoder_loading = background.submit(load_encoder, config.retriever.embedding_package,
                                                    config.retriever.embedding_path)
            if models is None:
                models = build_models(config, used_models(config))
        if encoder_loading is not None and encoder_loading.exception() is None:
            encoder = encoder_loading.result()
    if models is None:
        models = build_models(config, used_models(config))
    if store is None and needs_examples(config):
        store = open_example_store(config, encoder, progress=progress)
    if classifier is None:
        spec = config.classifier
        classifier = build_classifier(
            spec.kind, config.tasks, models.get(spec.model) if spec.model else None,
            threshold=spec.threshold, use_examples=spec.use_examples, min_confidence=spec.min_confidence,
            rules=spec.rules,
        )
    pool = expert_pool(config, models) if pool is None else pool
    synthesizer_name = config.planner.synthesizer_model or config.planner.model
    synthesizer = models.get(synthesizer_name) if synthesizer_name else None
    checkpointer = checkpointer_from_config(config) if checkpointer is None else with_router_serde(checkpointer)
    single = build_two_stage_graph(
        classifier=classifier,
        pool=pool,
        store=store,
        tasks=list(config.tasks),
        k=config.retriever.k,
        max_query_chars=config.limits.max_query_chars,
        review_unknown=config.persistence.review_unknown,
        fanout=config.fanout,
        synthesizer=synthesizer,
        checkpointer=checkpointer if config.mode == "single" else None,
        prices=expert_prices(config),
        threshold=config.classifier.threshold,
        query_router=query_router_from_config(config, store.encoder if store is not None else encoder, progress),
    )
    if config.mode == "single":
        return single
    from coe_router.graphs.planning import build_planning_graph
    from coe_router.routing.plans import Planner

    planner = Planner(models[config.planner.model], config.tasks, config.planner.max_steps, auto=config.mode == "auto")
    return build_planning_graph(planner=planner, step_graph=single, synthesizer=synthesizer,
                                max_query_chars=config.limits.max_query_chars, checkpointer=checkpointer)
