"""`python -m app` arguments: the login can come from a file or the environment (not only argv, which `ps` shows)."""

import pytest

from app.__main__ import AUTH_ENV, parse_args


@pytest.fixture(autouse=True)
def no_login_in_env(monkeypatch):
    monkeypatch.delenv(AUTH_ENV, raising=False)


def test_login_from_a_file(tmp_path):
    secret = tmp_path / "auth"
    secret.write_text("alice:s3cret:with:colons\n# a comment line is ignored\n")
    assert parse_args(["--auth-file", str(secret)]).login == ("alice", "s3cret:with:colons")


def test_login_from_the_environment(monkeypatch):
    monkeypatch.setenv(AUTH_ENV, "bob:pw")
    assert parse_args([]).login == ("bob", "pw")
    assert parse_args(["--auth", "carol:pw2"]).login == ("carol", "pw2")  # a flag wins over the environment


def test_no_login_unless_asked():
    assert parse_args([]).login is None


@pytest.mark.parametrize("argv", [["--auth", "alice"], ["--auth", "alice:"], ["--auth", ":pw"],
                                  ["--auth-file", "/no/such/file"], ["--auth", "a:b", "--auth-file", "f"]])
def test_a_bad_login_stops_with_a_reason(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "user:password" in err or "cannot read" in err or "not allowed with" in err


def test_an_empty_auth_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "auth"
    empty.write_text("")
    with pytest.raises(SystemExit):
        parse_args(["--auth-file", str(empty)])
    assert f"--auth-file {empty} must be user:password" in capsys.readouterr().err


def test_the_app_answers_long_videos_from_retrieved_segments_by_default(library, own_home, monkeypatch):
    """`python -m app` wires the moment-search index into the answering session: with --retrieve-always 1 a
    question is answered from the one segment whose <voco> keys score highest for it."""
    import gradio as gr

    import app.ui
    from app.__main__ import main
    from ingest.search import MomentSearch
    from voco.session import RetrievedSegments

    root, model = library
    built = []
    real_build = app.ui.build_ui
    monkeypatch.setattr(app.ui, "build_ui",
                        lambda service, thumbs: built.append(service) or real_build(service, thumbs))
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: None)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    home = own_home.home.root
    assert main(["--home", str(home), "--model", str(root / "model"), "--no-upload", "--retrieve-always", "1"]) == 0
    (service,) = built
    assert isinstance(service.selector, RetrievedSegments) and service.selector.max_segments == 1
    video = service.videos()[0]
    question = "what colour is the circle?"
    scores = MomentSearch(service.store, service.model).scores_for(question, video.id)
    _, stats = service.answer(video.id, question, max_new_tokens=2)
    assert [s.index for s in stats.segments_used] == [int(scores.argmax())] and stats.subset


def test_uniform_segments_and_retrieve_always_are_checked(capsys):
    assert parse_args(["--segments", "uniform"]).segments == "uniform"
    with pytest.raises(SystemExit):
        parse_args(["--segments", "uniform", "--retrieve-always", "2"])
    assert "--retrieve-always N needs --segments retrieved" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_naming_port_before_the_model_loads(tmp_path, capsys):
    """The model named does not exist: the port is checked first, and the message names --port (was: the address
    printed, then a traceback about GRADIO_SERVER_PORT)."""
    import socket

    from app.__main__ import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["--home", str(tmp_path / "home"), "--model", str(tmp_path / "no-model"), "--port", str(port)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert f"error: cannot listen on 127.0.0.1:{port} (Address already in use): pass a free port with --port N" in err
    assert "no checkpoint" not in err and "GRADIO_SERVER_PORT" not in err
