"""``scenescape view``: look at a run in the browser (three.js; see :mod:`scenescape.viewer`).

Examples::

    scenescape view runs/demo                      # serve on http://127.0.0.1:8000/ until Ctrl-C
    scenescape view runs/demo --html demo.html     # one self-contained file: no server, no network
    scenescape view --object runs/mug --port 0     # an object run; port 0 picks a free port
"""

from __future__ import annotations

import click

from scenescape.errors import InputError


@click.command("view", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", metavar="RUN", required=False, type=click.Path(file_okay=False))
@click.option("--object", "object_dir", type=click.Path(file_okay=False), default=None,
              help="View an object run folder (mesh + orbit cameras + video frames) instead.")
@click.option("--html", "html_out", type=click.Path(dir_okay=False), default=None,
              help="Write a self-contained HTML file (opens with no server, no network) and exit.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", type=int, default=8000, show_default=True, help="Port (0: any free port).")
@click.option("--max-frames", type=int, default=None, help="Embed at most this many frames (smaller page).")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
def view(run_dir: str | None, object_dir: str | None, html_out: str | None, host: str, port: int,
         max_frames: int | None, open_browser: bool) -> None:
    """Show RUN's mesh with its colours, the camera path as frustums, the frames on a slider and a play button
    that flies the path, in a browser page served on localhost (or written with --html)."""
    from scenescape import viewer

    if (run_dir is None) == (object_dir is None):
        raise InputError("give a scene RUN folder or --object RUN (exactly one)")
    if max_frames is not None and max_frames < 0:
        raise InputError(f"--max-frames must be >= 0, got {max_frames}")
    if object_dir is not None:
        data = viewer.object_view_data(object_dir, max_frames)
    else:
        data = viewer.scene_view_data(run_dir, max_frames)
    if html_out is not None:
        p = viewer.write_view_html(data, html_out)
        click.echo(f"viewer: {p} (self-contained; open it in a browser)")
        return
    server = viewer.make_server(viewer.build_view_html(data), host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    click.echo(f"serving the viewer on {url} (Ctrl-C to stop)", nl=True)
    import sys

    sys.stdout.flush()
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [view]
