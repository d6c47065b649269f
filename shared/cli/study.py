"""``sharpen study …``: MOS studies from a terminal (create, list, show, results, export, close, reopen).

Thin over ``dashboard.studies``, on this machine's database (like ``sharpen submit`` without ``--server``).
"""
from __future__ import annotations

import json

import click

from .context import Context, QueueUnreachable


def _fail(exc) -> click.ClickException:
    return click.ClickException(str(exc))


def _link(ctx: Context, share_token: str) -> str:
    """The raters' link on this machine's dashboard (behind a proxy, the same path on its address)."""
    return f"http://{ctx.settings.dashboard_host}:{ctx.settings.dashboard_port}/r/{share_token}"


@click.group()
def study() -> None:
    """MOS studies: people rate images 1–5; MOS and 95 % intervals per model version."""


@study.command("create")
@click.option("--batch", "batch_ids", type=int, multiple=True, required=True, help="A finished batch (repeatable).")
@click.option("--model", "model_version_ids", type=int, multiple=True,
              help="A model version to compare (repeatable; default: the versions the batches ran with).")
@click.option("--images", "n_images", type=int, required=True, help="How many images to sample.")
@click.option("--seed", type=int, default=None, help="Seed of the sample and the raters' orders (default: random).")
@click.option("--type", "kind", type=click.Choice(["acr", "triplet"]), default="acr", show_default=True,
              help="acr: one image rated 1–5; triplet: Blurry | Sharpened | Ground truth, three criteria.")
@click.option("--name", default="")
@click.pass_obj
def create(ctx: Context, batch_ids, model_version_ids, n_images, seed, kind, name):
    """Create a study; prints its id and the link raters open."""
    from dashboard.studies import StudyError, StudySpec, create_study, enqueue_reruns, get_study

    spec = StudySpec(batch_ids=list(batch_ids), model_version_ids=list(model_version_ids), n_images=n_images,
                     seed=seed, kind=kind, name=name)
    try:
        created = create_study(ctx.db, spec)
    except StudyError as exc:
        raise _fail(exc) from None
    with ctx.db.session() as s:
        st = get_study(s, created.study_id)
        click.echo(f"study {st.id} ({st.status}): {st.n_images} images, seed {st.seed}")
        click.echo(f"raters open: {_link(ctx, st.share_token)}")
    if created.rerun_batch_ids:
        try:
            enqueue_reruns(ctx.db, ctx.send, created, ctx.settings.chunk_size)
            click.echo(f"re-running the images on batch{'es' if len(created.rerun_batch_ids) > 1 else ''} "
                       f"{', '.join(map(str, created.rerun_batch_ids))}; the study opens when they are done")
        except QueueUnreachable as exc:
            click.echo(f"the re-runs are recorded; the queue is not reachable ({exc}): they are sent when the stack "
                       "runs", err=True)


@study.command("list")
@click.pass_obj
def list_command(ctx: Context):
    """Studies, newest first."""
    from dashboard.studies.views import list_studies

    with ctx.db.session() as s:
        for st in list_studies(s, 1, 50).items:
            click.echo(f"study {st['id']:>3} {st['status']:<9} {st['kind']:<7} {st['n_images']:>4} images × "
                       f"{st['conditions']} conditions, {st['raters']} raters, {st['answered']}/{st['trials']} "
                       f"answered  {st['name']}")


@study.command("show")
@click.argument("study_id", type=int)
@click.pass_obj
def show(ctx: Context, study_id):
    """A study's set-up, link and raters' progress."""
    from dashboard.studies import StudyError, get_study
    from dashboard.studies.views import study_detail

    with ctx.db.session() as s:
        try:
            st = get_study(s, study_id)
        except StudyError as exc:
            raise _fail(exc) from None
        d = study_detail(s, st)
        token = st.share_token
    click.echo(f"study {d['id']} {d['status']}: {d['name']} ({d['kind_name']}), seed {d['seed']}")
    click.echo("conditions: " + ", ".join(c["label"] for c in d["conditions"]))
    click.echo(f"raters open: {_link(ctx, token)}")
    for b in d["reruns"]:
        click.echo(f"re-run batch {b['batch_id']} (model {b['model_version_id']}): {b['status']} "
                   f"{b['ended']}/{b['total']}")
    for im in d["images"]:
        if im["dropped"]:
            click.echo(f"left out: {im['name']}: {im['dropped']}")


@study.command("results")
@click.argument("study_id", type=int)
@click.option("--include-flagged", is_flag=True, help="Count the raters the checks flagged too.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def results(ctx: Context, study_id, include_flagged, as_json):
    """MOS, SD, 95 % CI per condition; differences; raters and their checks."""
    from dashboard.studies import StudyError, get_study
    from dashboard.studies.results import study_results

    with ctx.db.session() as s:
        try:
            r = study_results(s, get_study(s, study_id), include_flagged=include_flagged)
        except StudyError as exc:
            raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(r, indent=1))
        return
    main = r["main_criterion"]
    f = lambda v, p=2: "–" if v is None else f"{v:.{p}f}"  # noqa: E731
    click.echo(f"{'condition':<34} {'MOS':>5} {'95 % CI':>14} {'SD':>5} {'N':>5} {'raters':>6}  CI over")
    for c in r["conditions"]:
        sc = c["scores"][main]
        ci = "–" if sc["ci_lo"] is None else f"[{sc['ci_lo']:.2f}, {sc['ci_hi']:.2f}]"
        click.echo(f"{c['label'][:34]:<34} {f(sc['mos']):>5} {ci:>14} {f(sc['sd']):>5} {sc['n_ratings']:>5} "
                   f"{sc['n_raters']:>6}  {sc['ci_method']}")
    for d in r["differences"]:
        ci = "–" if d["lo"] is None else f"[{d['lo']:+.2f}, {d['hi']:+.2f}]"
        mean = "–" if d["mean"] is None else f"{d['mean']:+.2f}"
        click.echo(f"{d['a']} − {d['b']}: {mean} ({ci})")
    for rt in r["raters"]:
        state = "flagged: " + "; ".join(rt["flags"]) if rt["flags"] else "ok"
        click.echo(f"rater {rt['name']}: {rt['answered']}/{rt['total']} answered, {state}"
                   + ("" if rt["included"] else " (left out)"))


@study.command("export")
@click.argument("study_id", type=int)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default="-", show_default=True,
              help="CSV file to write (- for stdout).")
@click.pass_obj
def export(ctx: Context, study_id, out):
    """Every raw rating as CSV (study, rater, item, condition, model version, score, times)."""
    from dashboard.studies import StudyError, get_study
    from dashboard.studies.results import ratings_csv

    with ctx.db.session() as s:
        try:
            text = ratings_csv(s, get_study(s, study_id))
        except StudyError as exc:
            raise _fail(exc) from None
    with click.open_file(out, "w") as f:
        f.write(text)


def _set_open(ctx: Context, study_id: int, open_: bool) -> None:
    from dashboard.studies import StudyError, set_open

    try:
        click.echo(f"study {study_id} is {set_open(ctx.db, study_id, open_).status}")
    except StudyError as exc:
        raise _fail(exc) from None


@study.command("close")
@click.argument("study_id", type=int)
@click.pass_obj
def close(ctx: Context, study_id):
    """Take no more ratings (the results stay)."""
    _set_open(ctx, study_id, False)


@study.command("reopen")
@click.argument("study_id", type=int)
@click.pass_obj
def reopen(ctx: Context, study_id):
    """Take ratings again."""
    _set_open(ctx, study_id, True)
