"""Unit tests of the credential redaction in orchestration/prefect/flow.py
(`redact`, `redact_argv`, `redact_command`): what the flow logs and records
must not show a token, a password or URL user-info, and must still show the
rest of the command. Run with Prefect's Python (flow.py imports prefect) by
scripts/test-prefect.sh.
"""
import ephemeral  # noqa: F401  (before prefect is imported)
from flow import redact, redact_argv, redact_command

SECRET = "s3cr3t-Value"


def assert_hidden(shown: str, *kept: str) -> None:
    assert SECRET not in shown, shown
    assert "***" in shown, shown
    for k in kept:
        assert k in shown, (k, shown)


def test_url_userinfo_in_an_option_value():
    shown = redact_argv(["nbserve", "retrain", "--mlflow-uri", f"https://bob:{SECRET}@mlflow.internal:5000/"])
    assert_hidden(shown, "nbserve retrain --mlflow-uri", "@mlflow.internal:5000/")
    assert "bob" not in shown, shown


def test_url_user_name_alone_is_a_secret_too():
    # A token given as the URL's user name (https://TOKEN@host).
    assert_hidden(redact_argv(["--mlflow-uri", f"https://{SECRET}@mlflow:5000"]), "@mlflow:5000")


def test_secret_option_with_a_separate_value():
    for option in ("--token", "--password", "--api-key", "--client-secret", "--auth", "-u", "--user"):
        shown = redact_argv(["fetch", option, SECRET, "--out", "data/train.csv"])
        assert_hidden(shown, f"fetch {option}", "--out data/train.csv")


def test_secret_option_with_equals():
    assert_hidden(redact_argv(["fetch", f"--password={SECRET}", "--retries=3"]), "--password=", "--retries=3")


def test_secret_variables_in_a_command_line():
    for name in ("API_TOKEN", "PGPASSWORD", "MYSQL_PWD", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"):
        shown = redact_command(f"env {name}={SECRET} scripts/fetch-data.sh --to data")
        assert_hidden(shown, f"{name}=", "scripts/fetch-data.sh --to data")


def test_authorization_header_and_bearer_token():
    shown = redact_argv(["curl", "-H", f"Authorization: Bearer {SECRET}", "-H", f"X-Api-Key: {SECRET}",
                         "https://data.example/train.csv"])
    assert_hidden(shown, "Authorization: Bearer", "X-Api-Key:", "https://data.example/train.csv")
    assert_hidden(redact(f"got 401 for bearer {SECRET}"), "got 401 for bearer")


def test_secret_query_parameters():
    shown = redact(f"GET https://store.example/x.csv?sig={SECRET}&access_token={SECRET}&page=2 failed")
    assert_hidden(shown, "https://store.example/x.csv?sig=", "&page=2 failed")


def test_inside_a_shell_command_string():
    shown = redact_command(f"sh -c 'curl -fsS -u bob:{SECRET} https://x.example/a.csv > data/a.csv'")
    assert_hidden(shown, "sh -c", "https://x.example/a.csv")


def test_unsplittable_command_is_still_redacted():
    assert_hidden(redact_command(f'unbalanced "quote TOKEN={SECRET}'), "unbalanced")


def test_json_fields_of_a_report():
    shown = redact('{"tracking": {"uri": "https://bob:%s@m:5000", "token": "%s"}, "verdict": "promoted"}'
                   % (SECRET, SECRET))
    assert_hidden(shown, '"verdict": "promoted"', '"token": "***"')


def test_ordinary_arguments_are_untouched():
    argv = ["nbserve", "retrain", "--data", "data/train.csv", "--feedback-log", "feedback/session-1.jsonl",
            "--holdout", "data/holdout.csv", "--report", "/tmp/r/retrain-report.json", "--alpha", "0.1,1",
            "--max-features", "0", "--model-version", "v2", "--min-f1-macro=0.9",
            "--mlflow-uri", "http://mlflow:5000", "--token-file", "/run/secrets/token"]
    assert redact_argv(argv) == " ".join(argv), redact_argv(argv)
    for message in ("nbserve: error: invalid setting gate.min_f1_macro: 2",
                    "nbserve: invalid setting feedback.token: must be at least 8 characters"):
        assert redact(message) == message, redact(message)

