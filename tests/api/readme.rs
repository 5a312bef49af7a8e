//! The README's curl examples, run against the real server.

use serde_json::Value;

use crate::helpers::*;

/// The ```sh blocks of the README that talk to localhost:8080.
fn readme_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => {
                let block = current.take().unwrap();
                if block.contains("localhost:8080") {
                    blocks.push(block);
                }
            }
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[tokio::test]
async fn readme_curl_examples_work() {
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("feedback.jsonl");
    let app = spawn_app_with(|s| {
        s.admin.token = Some("change-me-please".into());
        // The `POST /examples` example needs them.
        s.feedback.log_path = Some(log);
        s.feedback.accept_examples = true;
        // Both shipped models, as `scripts/serve.sh` serves them.
        std::fs::copy(
            root().join("models/spam-cnb.json"),
            s.model.dir.join("spam-cnb.json"),
        )
        .unwrap();
        s.model.repository = Some(s.model.dir.clone());
    })
    .await;
    let blocks = readme_blocks();
    assert!(blocks.len() >= 2, "README lost its examples");
    let mut answers = 0;
    for block in blocks {
        // One answer per line, so each can be parsed on its own.
        let script: String = block
            .replace("localhost:8080", &format!("127.0.0.1:{}", app.port))
            .lines()
            .map(|l| {
                if l.starts_with("curl ") {
                    format!("{l}; echo\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let out = tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
        {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v.get("error").is_none(), "example failed: {line}");
            answers += 1;
        }
    }
    assert!(answers >= 10, "{answers} answers");
    app.stop().await;
}
