"""``sdeval report``: render (again) the report of any result folder of gate, eval or compare."""

from __future__ import annotations

import click

from sdeval.cli.common import apply_votes, build_report_options, write_report


@click.command("report")
@click.argument("result_dir", type=click.Path(file_okay=False))
@click.option("--format", "formats", metavar="LIST", help="Comma-separated: html, junit, md, csv "
                                                          "(default html,junit,md).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write the report files here instead of into RESULT_DIR (for a read-only folder).")
@click.option("--report-url", "url", metavar="URL", help="URL prefix where the files are published (links in summary.md).")
@click.option("--report-assets", "assets", type=click.Path(file_okay=False), metavar="DIR",
              help="Thumbnails as files in DIR instead of data URIs (strict Content-Security-Policy viewers).")
@click.option("--max-images", "--report-max-images", "max_images", type=click.IntRange(0), metavar="N",
              help="Images shown in report.html, the worst first (default 500).")
@click.option("--human-form", is_flag=True, help="Compare folders: also write human/index.html, a blind "
                                                 "pairwise preference form (and its key, human/pairs.json).")
@click.option("--votes", "votes", multiple=True, type=click.Path(dir_okay=False), metavar="CSV",
              help="Compare folders: raters' votes from the form (repeatable; a rater column tells them apart); "
                   "adds win rates, sign tests and Bradley-Terry to compare.json and the report.")
def report(result_dir: str, formats: str | None, out_dir: str | None, url: str | None, assets: str | None,
           max_images: int | None, human_form: bool, votes: tuple[str, ...]) -> None:
    """Render RESULT_DIR (a gate, eval or compare result folder) as HTML, JUnit XML, Markdown, CSV.

    Reads only the folder's files, so it works on any old run. Exit 2 when RESULT_DIR is not a
    result folder.
    """
    options = build_report_options(formats, url, assets, max_images, out_dir=out_dir, human_form=human_form)
    if votes:
        apply_votes(result_dir, votes)
    write_report(result_dir, options)
