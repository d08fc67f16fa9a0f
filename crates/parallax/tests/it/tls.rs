//! TLS to PostgreSQL, through the real CLI against a throwaway cluster that refuses plain
//! connections and serves a certificate for `localhost` from a test CA (made with `openssl`).

use std::path::Path;
use std::process::Command;

use parallax_stub::StubConfig;

use crate::support::{Cluster, Fleet, spec};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA `NAME.crt`, and for the test CA a server certificate for `localhost` it signed.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn make_server_cert(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.crt",
            "-extfile",
            "server.ext",
        ],
    );
    // The server refuses a key that others may read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn workers_reach_a_ledger_that_only_speaks_tls_and_check_its_certificate() {
    let Some(cluster) = Cluster::start_with(
        "workers_reach_a_ledger_that_only_speaks_tls_and_check_its_certificate",
        Some("local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"),
        |dir| {
            make_ca(dir, "ca");
            make_ca(dir, "other-ca");
            make_server_cert(dir);
            vec![
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", dir.join("server.crt").display()),
                format!("ssl_key_file={}", dir.join("server.key").display()),
            ]
        },
    ) else {
        return;
    };
    let dir = std::path::PathBuf::from(cluster.path());
    let port = cluster.port;
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");
    let ca = dir.join("ca.crt").display().to_string();
    let other = dir.join("other-ca.crt").display().to_string();

    let fleet = Fleet::start(&["us"], |_| StubConfig::default()).await;
    fleet.catalog(&[("a", "prov-a")], "");
    fleet.write("job.yaml", &spec(5, &["a"], &["us"], ""));

    // The whole path over a verified connection: run, then read back.
    let verified = url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let out = fleet.parallax(&["run", "job.yaml", "--db", &verified]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let status = fleet.parallax(&["status", "--db", &verified]).await;
    assert_eq!(status.code, 0, "{status:?}");

    // libpq's default (`prefer`) and `require` encrypt without checking the certificate.
    for query in ["", "sslmode=require"] {
        let out = fleet.parallax(&["status", "--db", &url("127.0.0.1", query)]).await;
        assert_eq!(out.code, 0, "{query}: {out:?}");
    }
    // `verify-ca` checks the chain only: the address is not the certificate's name, and passes.
    let out =
        fleet.parallax(&["status", "--db", &url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))]).await;
    assert_eq!(out.code, 0, "{out:?}");

    // Refused, each with a reason a user can act on, and never a password in sight.
    let refused = [
        (url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")), "certificate not valid for name"),
        (url("localhost", &format!("sslmode=verify-full&sslrootcert={other}")), "invalid peer certificate"),
        (url("localhost", "sslmode=verify-full&sslrootcert=system"), "invalid peer certificate"),
        (url("localhost", "sslmode=disable"), "no encryption"),
        (url("localhost", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"), "/nonexistent/ca.pem"),
        (url("localhost", "sslmode=verify_full"), "verify-full"),
    ];
    for (db, why) in refused {
        let db = db.replacen("postgres@", "postgres:hunter2@", 1);
        let out = fleet.parallax(&["status", "--db", &db]).await;
        assert_ne!(out.code, 0, "{db}: {out:?}");
        assert!(out.stderr.contains(why), "{db}: expected `{why}` in {}", out.stderr);
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    }
}
