//! Malformed requests answered as DSP0200 says, one case for each kind of
//! fault in OpenPegasus' wetest suites `Headers` and `ErrorXml` (the
//! requests here are written for this server's test classes; the faults
//! are theirs): headers missing, repeated, badly encoded or disagreeing
//! with the body (400 `header-mismatch`, or `unsupported-operation` for
//! CIMOperation), XML that is not well-formed (400
//! `request-not-well-formed`) or not valid (400 `request-not-valid`),
//! versions the server does not speak (501 `unsupported-*`), HTTP-level
//! faults (400/501), and the cases that are CIM errors in a 200 reply.
//! After every case the server still answers a good request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use replicim::cim::server::ServerConfig;

use crate::cim_support::TestServer;

/// Sends `request` and returns (status, lowercased head, body).
fn send(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// An intrinsic call in root/cimv2.
fn intrinsic(method: &str, params: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1001" PROTOCOLVERSION="1.0"><SIMPLEREQ>
<IMETHODCALL NAME="{method}"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>{params}</IMETHODCALL>
</SIMPLEREQ></MESSAGE></CIM>"#
    )
}

const CLASS_PARAM: &str =
    r#"<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="TST_Widget"/></IPARAMVALUE>"#;

/// Reset on TST_Widget.Name="a",Id=1.
fn extrinsic(method: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1002" PROTOCOLVERSION="1.0"><SIMPLEREQ>
<METHODCALL NAME="{method}"><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH>
<INSTANCENAME CLASSNAME="TST_Widget"><KEYBINDING NAME="Name"><KEYVALUE VALUETYPE="string">a</KEYVALUE></KEYBINDING><KEYBINDING NAME="Id"><KEYVALUE VALUETYPE="numeric">1</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH>
<PARAMVALUE NAME="Force" PARAMTYPE="boolean"><VALUE>TRUE</VALUE></PARAMVALUE>
</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"#
    )
}

const WIDGET: &str = r#"root/cimv2:TST_Widget.Id=1,Name="a""#;

/// A POST with the given extra header lines (each ending in \r\n).
fn post(addr: SocketAddr, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /cimom HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/xml; charset=utf-8\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The usual CIM headers of an intrinsic call.
fn cim(method: &str) -> String {
    format!("CIMOperation: MethodCall\r\nCIMMethod: {method}\r\nCIMObject: root/cimv2\r\n")
}

struct Case {
    what: &'static str,
    request: Vec<u8>,
    status: u16,
    /// The CIMError header, or the ERROR CODE of a 200 reply.
    expect: &'static str,
}

fn cases(a: SocketAddr) -> Vec<Case> {
    let enum_names = intrinsic("EnumerateInstanceNames", CLASS_PARAM);
    let ein = cim("EnumerateInstanceNames");
    let with_pv = |pv: &str| format!("{ein}CIMProtocolVersion: {pv}\r\n");
    let xh = |method: &str, object: &str| {
        format!("CIMOperation: MethodCall\r\nCIMMethod: {method}\r\nCIMObject: {object}\r\n")
    };
    let body_pv = |pv: &str| {
        enum_names.replace(
            "PROTOCOLVERSION=\"1.0\"",
            &format!("PROTOCOLVERSION=\"{pv}\""),
        )
    };
    let c = |what, request, status, expect| Case {
        what,
        request,
        status,
        expect,
    };
    let mut v = vec![
        // --- Headers ---
        c("the baseline", post(a, &ein, &enum_names), 200, "ok"),
        c(
            "CIMMethod names another extrinsic method",
            post(a, &xh("BadValue", WIDGET), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMMethod names another intrinsic method",
            post(a, &cim("BadValue"), &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "an unknown intrinsic method, named alike in header and body",
            post(a, &cim("BadValue"), &intrinsic("BadValue", "")),
            200,
            "7",
        ),
        c(
            "CIMMethod with a malformed % escape",
            post(a, &xh("Rese%7", WIDGET), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject names another instance",
            post(a, &xh("Reset", r#"root/cimv2:TST_Widget.Id=1,Name="b""#), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject names another namespace",
            post(a, &xh("Reset", r#"root/cimv2/other:TST_Widget.Id=1,Name="a""#), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject names another namespace (intrinsic)",
            post(a, &xh("EnumerateInstanceNames", "root/cimv2/BadValue"), &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject that is no path at all",
            post(a, &xh("Reset", r#"root/Bad/Unparsable.Value.What,"crazy".object?"#), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject with a non-hex escape",
            post(a, &xh("Reset", "root%GFcimv2%3ATST_Widget.Id%3D1%2CName%3D%22a%22"), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject with a half escape",
            post(a, &xh("Reset", "root%2Fcimv2%3ATST_Widget.Id%3D1%2CName%3D%22a%22%4"), &extrinsic("Reset")),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject fully percent-encoded and right",
            post(a, &xh("Reset", "root%2Fcimv2%3ATST_Widget.Name%3D%22a%22%2CId%3D1"), &extrinsic("Reset")),
            200,
            "ok",
        ),
        c(
            "CIMOperation is not MethodCall",
            post(a, "CIMOperation: BadValue\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root/cimv2\r\n", &enum_names),
            400,
            "unsupported-operation",
        ),
        c(
            "CIMOperation sent twice",
            post(a, &format!("{ein}CIMOperation: MethodCall\r\n"), &enum_names),
            400,
            "unsupported-operation",
        ),
        c(
            "CIMOperation missing",
            post(a, "CIMMethod: EnumerateInstanceNames\r\nCIMObject: root/cimv2\r\n", &enum_names),
            400,
            "",
        ),
        c(
            "CIMMethod missing",
            post(a, "CIMOperation: MethodCall\r\nCIMObject: root/cimv2\r\n", &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "CIMMethod empty",
            post(a, "CIMOperation: MethodCall\r\nCIMMethod:\r\nCIMObject: root/cimv2\r\n", &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "CIMMethod sent twice",
            post(a, &format!("{ein}CIMMethod: EnumerateInstanceNames\r\n"), &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "CIMObject missing",
            post(a, "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\n", &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "CIMProtocolVersion disagrees with the body",
            post(a, &with_pv("2.0"), &enum_names),
            400,
            "header-mismatch",
        ),
        c(
            "no CIMProtocolVersion (so 1.0), body 2.0",
            post(a, &ein, &body_pv("2.0")),
            400,
            "header-mismatch",
        ),
        c(
            "protocol version 2.0 in header and body",
            post(a, &with_pv("2.0"), &body_pv("2.0")),
            501,
            "unsupported-protocol-version",
        ),
        c(
            "a CIMBatch header",
            post(a, &format!("{ein}CIMBatch: CIMBatch\r\n"), &enum_names),
            501,
            "multiple-requests-unsupported",
        ),
        c(
            "a MULTIREQ body without CIMBatch",
            post(
                a,
                &ein,
                &enum_names
                    .replace("<SIMPLEREQ>", "<MULTIREQ><SIMPLEREQ>")
                    .replace("</SIMPLEREQ>", "</SIMPLEREQ><SIMPLEREQ></SIMPLEREQ></MULTIREQ>"),
            ),
            400,
            "header-mismatch",
        ),
        c(
            "no MESSAGE element",
            post(
                a,
                &ein,
                r#"<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><SIMPLEREQ/></CIM>"#,
            ),
            400,
            "request-not-valid",
        ),
        c(
            "CIMVERSION 3.0",
            post(a, &ein, &enum_names.replace("CIMVERSION=\"2.0\"", "CIMVERSION=\"3.0\"")),
            501,
            "unsupported-cim-version",
        ),
        c(
            "HTTP/1.1 without Host",
            format!(
                "POST /cimom HTTP/1.1\r\nConnection: close\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n{ein}\r\n{enum_names}",
                enum_names.len()
            )
            .into_bytes(),
            400,
            "",
        ),
        c(
            "HTTP/1.0 without Host is fine",
            format!(
                "POST /cimom HTTP/1.0\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n{ein}\r\n{enum_names}",
                enum_names.len()
            )
            .into_bytes(),
            200,
            "ok",
        ),
        c(
            "a Content-Length that is not a number",
            format!(
                "POST /cimom HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/xml\r\nContent-Length: {}a\r\n{ein}\r\n{enum_names}",
                enum_names.len()
            )
            .into_bytes(),
            400,
            "",
        ),
        c(
            "Content-Length twice, different",
            format!(
                "POST /cimom HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nContent-Length: 7\r\n{ein}\r\n{enum_names}",
                enum_names.len()
            )
            .into_bytes(),
            400,
            "",
        ),
        c(
            "a Transfer-Encoding other than chunked",
            format!(
                "POST /cimom HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/xml\r\nTransfer-Encoding: gzip\r\n{ein}\r\n{enum_names}"
            )
            .into_bytes(),
            400,
            "",
        ),
        c(
            "GET",
            format!("GET /cimom HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n").into_bytes(),
            501,
            "",
        ),
        c(
            "M-POST with a mismatched 23-CIMMethod",
            format!(
                "M-POST /cimom HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\nContent-Type: application/xml\r\nMan: http://www.dmtf.org/cim/mapping/http/v1.0;ns=23\r\n23-CIMOperation: MethodCall\r\n23-CIMMethod: GetClass\r\n23-CIMObject: root/cimv2\r\nContent-Length: {}\r\n\r\n{enum_names}",
                enum_names.len()
            )
            .into_bytes(),
            400,
            "header-mismatch",
        ),
        // --- ErrorXml ---
        c(
            "an attribute without a name",
            post(a, &ein, &enum_names.replace(r#"<IPARAMVALUE NAME="ClassName">"#, r#"<IPARAMVALUE ="ClassName">"#)),
            400,
            "request-not-well-formed",
        ),
        c(
            "a malformed character reference",
            post(a, &ein, &enum_names.replace("TST_Widget", "TST_&#1a;Widget")),
            400,
            "request-not-well-formed",
        ),
        c(
            "an undefined entity",
            post(a, &ein, &enum_names.replace("TST_Widget", "&bogus;TST_Widget")),
            400,
            "request-not-well-formed",
        ),
        c(
            "a closing element that does not match",
            post(a, &ein, &enum_names.replace("</IPARAMVALUE>", "</IPARAMVALUEX>")),
            400,
            "request-not-well-formed",
        ),
        c(
            "DTDVERSION 2. (no minor)",
            post(a, &ein, &enum_names.replace("DTDVERSION=\"2.0\"", "DTDVERSION=\"2.\"")),
            501,
            "unsupported-dtd-version",
        ),
        c(
            "DTDVERSION 2.1:3",
            post(a, &ein, &enum_names.replace("DTDVERSION=\"2.0\"", "DTDVERSION=\"2.1:3\"")),
            501,
            "unsupported-dtd-version",
        ),
        c(
            "DTDVERSION 3.0",
            post(a, &ein, &enum_names.replace("DTDVERSION=\"2.0\"", "DTDVERSION=\"3.0\"")),
            501,
            "unsupported-dtd-version",
        ),
        c(
            "PROTOCOLVERSION 1.12:34 (sent in the header too)",
            post(a, &with_pv("1.12:34"), &body_pv("1.12:34")),
            501,
            "unsupported-protocol-version",
        ),
        c(
            "PROTOCOLVERSION 1. (sent in the header too)",
            post(a, &with_pv("1."), &body_pv("1.")),
            501,
            "unsupported-protocol-version",
        ),
        c(
            "an XML declaration without a version",
            post(a, &ein, &enum_names.replace(r#"<?xml version="1.0" encoding="utf-8"?>"#, "<?xml ?>")),
            400,
            "request-not-valid",
        ),
        c(
            "a boolean that is neither TRUE nor FALSE",
            post(
                a,
                &cim("EnumerateClassNames"),
                &intrinsic("EnumerateClassNames", r#"<IPARAMVALUE NAME="DeepInheritance"><VALUE>junk</VALUE></IPARAMVALUE>"#),
            ),
            400,
            "request-not-valid",
        ),
        c(
            "a key binding without a value",
            post(
                a,
                &cim("GetInstance"),
                &intrinsic(
                    "GetInstance",
                    r#"<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="TST_Widget"><KEYBINDING NAME="Name"></KEYBINDING></INSTANCENAME></IPARAMVALUE>"#,
                ),
            ),
            400,
            "request-not-valid",
        ),
        c(
            "an instance name without a class",
            post(
                a,
                &cim("GetInstance"),
                &intrinsic(
                    "GetInstance",
                    r#"<IPARAMVALUE NAME="InstanceName"><INSTANCENAME><KEYBINDING NAME="Name"><KEYVALUE>a</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>"#,
                ),
            ),
            400,
            "request-not-valid",
        ),
        c(
            "an IPARAMVALUE without a name",
            post(a, &ein, &enum_names.replace(r#"<IPARAMVALUE NAME="ClassName">"#, "<IPARAMVALUE>")),
            400,
            "request-not-valid",
        ),
        c(
            "an invalid value of a typed method parameter",
            post(a, &xh("Reset", WIDGET), &extrinsic("Reset").replace("<VALUE>TRUE</VALUE>", "<VALUE>perhaps</VALUE>")),
            400,
            "request-not-valid",
        ),
        c(
            "an invalid datetime in a created instance",
            post(
                a,
                &cim("CreateInstance"),
                &intrinsic(
                    "CreateInstance",
                    r#"<IPARAMVALUE NAME="NewInstance"><INSTANCE CLASSNAME="TST_Widget"><PROPERTY NAME="Name" TYPE="string"><VALUE>z</VALUE></PROPERTY><PROPERTY NAME="Id" TYPE="uint32"><VALUE>9</VALUE></PROPERTY><PROPERTY NAME="Made" TYPE="datetime"><VALUE>yesterday</VALUE></PROPERTY></INSTANCE></IPARAMVALUE>"#,
                ),
            ),
            400,
            "request-not-valid",
        ),
        c(
            "a property given twice in a created instance",
            post(
                a,
                &cim("CreateInstance"),
                &intrinsic(
                    "CreateInstance",
                    r#"<IPARAMVALUE NAME="NewInstance"><INSTANCE CLASSNAME="TST_Widget"><PROPERTY NAME="Name" TYPE="string"><VALUE>z</VALUE></PROPERTY><PROPERTY NAME="Name" TYPE="string"><VALUE>y</VALUE></PROPERTY></INSTANCE></IPARAMVALUE>"#,
                ),
            ),
            400,
            "request-not-valid",
        ),
    ];
    // Character references that are good are decoded (the instance is
    // simply not there).
    v.push(c(
        "good character references",
        post(
            a,
            &cim("GetInstance"),
            &intrinsic(
                "GetInstance",
                r#"<IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="TST_Widget"><KEYBINDING NAME="Name"><KEYVALUE>&#x7a;&#122;&amp;</KEYVALUE></KEYBINDING><KEYBINDING NAME="Id"><KEYVALUE>1</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>"#,
            ),
        ),
        200,
        "6",
    ));
    v
}

#[test]
fn every_wetest_fault_is_answered_as_dsp0200_says() {
    let s = TestServer::start(0, ServerConfig::default());
    let a = s.http;
    let mut wrong = Vec::new();
    for case in cases(a) {
        let (status, head, body) = send(a, &case.request);
        let ok = status == case.status
            && match (status, case.expect) {
                (200, "ok") => !body.contains("<ERROR"),
                (200, code) => body.contains(&format!("<ERROR CODE=\"{code}\"")),
                (_, "") => !head.contains("cimerror:"),
                (_, e) => head.contains(&format!("cimerror: {e}")),
            };
        println!(
            "  {:<62} {status} {}",
            case.what,
            head.lines()
                .find(|l| l.starts_with("cimerror:"))
                .unwrap_or("")
        );
        if !ok {
            wrong.push(format!(
                "{}: want {} {}, got {status}\n{head}\n{}",
                case.what,
                case.status,
                case.expect,
                body.chars().take(300).collect::<String>()
            ));
        }
        // The server still serves.
        let (st, _, _) = send(
            a,
            &post(
                a,
                &cim("EnumerateInstanceNames"),
                &intrinsic("EnumerateInstanceNames", CLASS_PARAM),
            ),
        );
        assert_eq!(st, 200, "the server stopped answering after: {}", case.what);
    }
    assert!(
        wrong.is_empty(),
        "{} cases answered wrongly:\n{}",
        wrong.len(),
        wrong.join("\n\n")
    );
}
