#!/usr/bin/env python3
"""Generates examples/storm-0558/logs/: a small simulated tenant with a
Storm-0558-style intrusion, in the export formats `tokenward hunt` reads.

Deterministic (fixed seed, fixed dates): running it again gives the same
bytes. Python 3.11 standard library only.

Tenant: contoso.com (fictional), five users, 2023-05-22 .. 2023-06-25.
Benign users sign in from documentation addresses (RFC 5737 / RFC 3849).
The intruder uses Storm-0558 infrastructure IPs published by Microsoft
(2023-07-14) and forged tokens that no Entra sign-in issued:

  2023-06-19  OWA GetAccessTokenForResource (RecordType 275) for dan's
              session from the token web panel, renewed in a chain;
              MailItemsAccessed Bind burst on dan's mailbox through a new
              (AppId, ClientAppId) pair with the actor's client string.
  2023-06-20  Sync of dan's folders by a REST client; a throttled record.
  2023-06-20  SharePoint file access with the actor's browser user agent.
  2023-06-21  As erin (Exchange admin): mailbox audit bypass for dan and
              unified audit ingestion switched off -> no Exchange records
              until erin switches it back on 2023-06-23 12:00.
  2023-06-19  A line-of-business API gateway logs the forged token's
              header: kid of the acquired MSA key.
  2023-06-19  A second API, behind `tokenward gateway`, refuses a burst of
              forged tokens from a SoftEther proxy (tokenward-gateway/).

Beyond the published Storm-0558 TTPs, the audit tampering is added so that
every detection of `tokenward hunt` has something to find.
"""

import datetime as dt
import gzip
import hashlib
import json
import os
import random
import uuid

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "logs")
R = random.Random(558)


def stable_id(text):
    """A GUID derived from text. Python's hash() of a str changes per process
    (hash randomisation), which made the output differ between runs."""
    return str(uuid.UUID(bytes=hashlib.sha256(text.encode()).digest()[:16], version=4))
TENANT = "7c3a1c5e-0f2b-4c7e-9f1a-2b6d3e4f5a60"
ORG = "contoso.onmicrosoft.com"
START = dt.datetime(2023, 5, 22, tzinfo=dt.timezone.utc)
DAYS = 35

EXO = "00000002-0000-0ff1-ce00-000000000000"  # Office 365 Exchange Online
OFFICE = "d3590ed6-52b3-4102-aeff-aad2292ab01c"  # Microsoft Office (desktop)
IOS = "27922004-5251-4030-b22d-91ecd9a37ea4"  # Outlook mobile
ONE_OUTLOOK_WEB = "9199bf20-a13f-4107-85dc-02114787ef48"
SPO = "00000003-0000-0ff1-ce00-000000000000"

USERS = {
    "alice.nguyen": {"ip": "198.51.100.10", "clients": ["desktop", "owa"]},
    "bob.schmidt": {"ip": "198.51.100.11", "clients": ["desktop"]},
    "carol.diaz": {"ip": "2001:db8:10::20", "clients": ["desktop", "mobile"]},
    "dan.okafor": {"ip": "203.0.113.21", "clients": ["desktop", "owa"]},
    "erin.walsh": {"ip": "192.0.2.30", "clients": ["desktop"]},
}
CLIENTS = {
    "desktop": (OFFICE, OFFICE, "Client=MSExchangeRPC"),
    "owa": (EXO, EXO, "Client=OWA;Action=ViaProxy"),
    "mobile": (IOS, IOS, "Client=OutlookService;Outlook-iOS/2.0;"),
}

# Intruder (Storm-0558 IOC IPs, within their published windows).
PANEL_IP = "195.26.87.219"  # token web panel, 5/15/2023 .. 6/25/2023
PROXY_IPS = ["51.89.156.153", "45.14.227.212"]  # SoftEther proxies
ACTOR_UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/106.0.0.0 Safari/537.36 Edg/106.0.1370.52")
ACTOR_CLIENT = "Client=REST;Client=RESTSystem;;"
ACTOR_SESSION = "5b0c0f3e-58a1-4d55-9c2e-0000deadbeef"
VICTIM = "dan.okafor"
ADMIN = "erin.walsh"
MSA_KID = "1LTMzakihiRla_8z2BEJVXeWMqo"
GAP_START = dt.datetime(2023, 6, 21, 0, 50, tzinfo=dt.timezone.utc)
GAP_END = dt.datetime(2023, 6, 23, 12, 0, tzinfo=dt.timezone.utc)


def upn(u):
    return f"{u}@contoso.com"


def gid():
    return str(uuid.UUID(int=R.getrandbits(128), version=4))


def tok():
    # uti-style token id: 22 chars of base64url.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(R.choice(alphabet) for _ in range(22))


def ual_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def iso_z(t, frac=True):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-0 if frac else -7] + "Z" if frac else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def in_gap(t):
    return GAP_START <= t < GAP_END


interactive, noninteractive, exchange, sharepoint, admin, gateway = [], [], [], [], [], []
SESSIONS = {u: {} for u in USERS}  # week -> session id


def session(u, t):
    week = (t - START).days // 7
    return SESSIONS[u].setdefault(week, gid())


def signin(u, t, app, app_name, resource, interactive_flag, ip=None):
    sid = session(u, t)
    rec = {
        "id": gid(),
        "createdDateTime": iso_z(t, frac=False),
        "userDisplayName": u.replace(".", " ").title(),
        "userPrincipalName": upn(u),
        "userId": stable_id(u),
        "appId": app,
        "appDisplayName": app_name,
        "ipAddress": ip or USERS[u]["ip"],
        "clientAppUsed": "Browser" if app == EXO else "Mobile Apps and Desktop clients",
        "correlationId": gid(),
        "conditionalAccessStatus": "success",
        "isInteractive": interactive_flag,
        "resourceDisplayName": resource,
        "resourceId": EXO,
        "status": {"errorCode": 0, "failureReason": "Other.", "additionalDetails": None},
        "uniqueTokenIdentifier": tok(),
        "sessionId": sid,
        "tokenIssuerType": "AzureAD",
        "incomingTokenType": "none" if interactive_flag else "refreshToken",
        "homeTenantId": TENANT,
        "resourceTenantId": TENANT,
    }
    (interactive if interactive_flag else noninteractive).append(rec)
    return rec


def appctx(si):
    return {"AADSessionId": si["sessionId"], "IssuedAtTime": si["createdDateTime"][:19],
            "UniqueTokenId": si["uniqueTokenIdentifier"], "ClientAppId": si["appId"]}


def mia(u, t, client, access, count, si, ip, folders=("\\Inbox",), throttled=False,
        app=None, capp=None, cinfo=None):
    a, c, ci = CLIENTS[client] if client else (app, capp, cinfo)
    items = [{"InternetMessageId": f"<{gid()}@contoso.com>", "SizeInBytes": R.randint(2000, 90000)}
             for _ in range(min(count, 3))]
    return {
        "CreationTime": ual_time(t), "Id": gid(), "Operation": "MailItemsAccessed",
        "OrganizationId": TENANT, "RecordType": 50, "ResultStatus": "Succeeded", "UserKey": "1003" + gid()[:12].upper(),
        "UserType": 0, "Version": 1, "Workload": "Exchange", "ClientIP": ip, "UserId": upn(u),
        "AppId": a, "ClientAppId": c, "ClientIPAddress": ip, "ClientInfoString": ci,
        "ExternalAccess": False, "InternalLogonType": 0, "LogonType": 0, "LogonUserSid": "S-1-5-21-0-0-0-1" + str(len(u)),
        "MailboxGuid": stable_id(u + "mbx"),
        "MailboxOwnerSid": "S-1-5-21-0-0-0-1" + str(len(u)), "MailboxOwnerUPN": upn(u),
        "OperationProperties": [{"Name": "MailAccessType", "Value": access},
                                {"Name": "IsThrottled", "Value": "True" if throttled else "False"}],
        "OrganizationName": ORG, "OriginatingServer": "DM6PR11MB0000 (15.20.6500.000)\r\n",
        "SessionId": si["sessionId"] if si else ACTOR_SESSION,
        "TokenObjectId": stable_id(u + "oid"), "TokenTenantId": TENANT,
        "AppAccessContext": appctx(si) if si else None,
        "OperationCount": count,
        "Folders": [{"Path": f, "FolderItems": items if access == "Bind" else []} for f in folders],
    }


def owa_auth(u, t, si, ip, token_id, session_id):
    return {
        "CreationTime": ual_time(t), "Id": gid(), "Operation": "OWAGetAccessTokenForResource",
        "OrganizationId": TENANT, "RecordType": 275, "ResultStatus": "Succeeded", "UserType": 0, "Version": 1,
        "Workload": "Exchange", "ClientIP": ip, "UserId": upn(u), "UserKey": "1003" + gid()[:12].upper(),
        "ResourceURL": "https://outlook.office.com/", "UniqueTokenIdentifier": token_id,
        "AppAccessContext": {"AADSessionId": session_id, "UniqueTokenId": token_id},
    }


def sp_record(u, t, si, ip, ua, fname):
    return {
        "CreationTime": ual_time(t), "Id": gid(), "Operation": "FileAccessed", "OrganizationId": TENANT,
        "RecordType": 6, "UserKey": "i:0h.f|membership|1003" + gid()[:12], "UserType": 0, "Version": 1,
        "Workload": "SharePoint", "ClientIP": ip, "ObjectId": f"https://contoso.sharepoint.com/sites/policy/Shared Documents/{fname}",
        "UserId": upn(u), "ApplicationId": SPO, "EventSource": "SharePoint", "ItemType": "File",
        "Site": gid(), "UserAgent": ua, "SourceFileName": fname,
        "AppAccessContext": {"AADSessionId": si["sessionId"], "UniqueTokenId": si["uniqueTokenIdentifier"],
                             "IssuedAtTime": si["createdDateTime"][:19]} if si else
                            {"AADSessionId": ACTOR_SESSION, "UniqueTokenId": tok()},
    }


def admin_record(u, t, ip, op, params, si=None):
    return {
        "CreationTime": ual_time(t), "Id": gid(), "Operation": op, "OrganizationId": TENANT, "RecordType": 1,
        "ResultStatus": "True", "UserKey": "1003" + gid()[:12].upper(), "UserType": 2, "Version": 1,
        "Workload": "Exchange", "ClientIP": f"{ip}:{R.randint(10000, 60000)}", "UserId": upn(u),
        "AppId": "fb78d390-0c51-40cd-8e17-fdbfab77341b", "ClientAppId": "",
        "ExternalAccess": False, "OrganizationName": ORG, "OriginatingServer": "DM6PR11MB0000 (15.20.6500.000)\r\n",
        "Parameters": [{"Name": k, "Value": v} for k, v in params],
        "SessionId": si["sessionId"] if si else ACTOR_SESSION,
        "AppAccessContext": appctx(si) if si else {"AADSessionId": ACTOR_SESSION, "UniqueTokenId": tok()},
    }


UA_EDGE_BENIGN = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/113.0.0.0 Safari/537.36 Edg/113.0.1774.42")

# ---- benign tenant -------------------------------------------------------
for d in range(DAYS):
    day = START + dt.timedelta(days=d)
    weekend = day.weekday() >= 5
    hours = [9, 13, 16] if weekend else list(range(8, 18))
    for u, info in USERS.items():
        t0 = day + dt.timedelta(hours=hours[0] - 1, minutes=R.randint(40, 59))
        if not in_gap(t0):
            pass
        signin(u, t0, OFFICE, "Microsoft Office", "Office 365 Exchange Online", True)
        for h in hours:
            t = day + dt.timedelta(hours=h, minutes=R.randint(0, 10))
            si = signin(u, t, OFFICE, "Microsoft Office", "Office 365 Exchange Online", False)
            for client in info["clients"]:
                tc = t + dt.timedelta(minutes=R.randint(1, 45), seconds=R.randint(0, 59))
                if in_gap(tc):
                    continue
                exchange.append(mia(u, tc, client, "Bind", R.randint(1, 3), si, info["ip"]))
            if h == hours[0]:
                ts = t + dt.timedelta(minutes=2)
                if not in_gap(ts):
                    exchange.append(mia(u, ts, "desktop", "Sync", 1, si, info["ip"],
                                        folders=("\\Inbox", "\\Sent Items")))
            if "owa" in info["clients"] and h in (hours[0], hours[-1]):
                ta = t + dt.timedelta(minutes=1)
                if not in_gap(ta):
                    exchange.append(owa_auth(u, ta, si, info["ip"], tok(), si["sessionId"]))
            if h in (9, 11, 13, 16):
                tsp = t + dt.timedelta(minutes=R.randint(5, 50))
                sharepoint.append(sp_record(u, tsp, si, info["ip"], UA_EDGE_BENIGN, f"report-{R.randint(1, 40)}.docx"))
    # Weekly benign admin work by erin.
    t = day + dt.timedelta(hours=10, minutes=15)
    if day.weekday() == 2 and not in_gap(t):
        si = signin(ADMIN, t - dt.timedelta(minutes=1), OFFICE, "Microsoft Office", "Office 365 Exchange Online", False)
        u = R.choice(list(USERS))
        admin.append(admin_record(ADMIN, t, USERS[ADMIN]["ip"], "Set-Mailbox",
                                  [("Identity", upn(u)), ("RetainDeletedItemsFor", "30.00:00:00")], si))
    # API gateway: benign tokens signed by the tenant's current keys.
    for u in USERS:
        if not weekend:
            t = day + dt.timedelta(hours=11, minutes=R.randint(0, 59))
            gateway.append({"time": iso_z(t, frac=False), "client_ip": USERS[u]["ip"], "sub": upn(u),
                            "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "tid": TENANT,
                            "aud": "api://contoso-records", "kid": R.choice(["-KI3Q9nNR7bRofxmeZoXqbHZGew", "DqUu8gf-nAgcyjP3-SuplNAXAnc"]),
                            "alg": "RS256", "decision": "allow", "path": "/records/search"})

# erin switches unified audit ingestion back on after the gap (benign).
si = signin(ADMIN, GAP_END - dt.timedelta(minutes=3), OFFICE, "Microsoft Office", "Office 365 Exchange Online", False)
admin.append(admin_record(ADMIN, GAP_END, USERS[ADMIN]["ip"], "Set-AdminAuditLogConfig",
                          [("UnifiedAuditLogIngestionEnabled", "True")], si))

# ---- intrusion ------------------------------------------------------------
d1 = dt.datetime(2023, 6, 19, 1, 10, tzinfo=dt.timezone.utc)
chain = [(d1, PANEL_IP), (d1 + dt.timedelta(minutes=55), PANEL_IP), (d1 + dt.timedelta(hours=2), PROXY_IPS[0]),
         (d1 + dt.timedelta(days=1, hours=1), PROXY_IPS[0]), (d1 + dt.timedelta(days=1, hours=2), PROXY_IPS[1]),
         (d1 + dt.timedelta(days=1, hours=3), PROXY_IPS[1])]
for t, ip in chain:
    exchange.append(owa_auth(VICTIM, t, None, ip, tok(), ACTOR_SESSION))
actor_tokens = []
for i in range(20):
    t = d1 + dt.timedelta(minutes=20 + i * 9)
    rec = mia(VICTIM, t, None, "Bind", R.randint(40, 60), None, PROXY_IPS[0],
              folders=("\\Inbox", "\\Inbox\\State Dept"), app=EXO, capp=ONE_OUTLOOK_WEB, cinfo=ACTOR_CLIENT)
    tid = tok()
    actor_tokens.append(tid)
    rec["AppAccessContext"] = {"AADSessionId": ACTOR_SESSION, "UniqueTokenId": tid}
    exchange.append(rec)
d2 = dt.datetime(2023, 6, 20, 3, 5, tzinfo=dt.timezone.utc)
rec = mia(VICTIM, d2, None, "Sync", 2, None, PROXY_IPS[1], folders=("\\Inbox", "\\Sent Items"),
          app=EXO, capp=ONE_OUTLOOK_WEB, cinfo=ACTOR_CLIENT)
rec["AppAccessContext"] = {"AADSessionId": ACTOR_SESSION, "UniqueTokenId": tok()}
exchange.append(rec)
rec = mia(VICTIM, d2 + dt.timedelta(hours=1, minutes=25), None, "Bind", 1, None, PROXY_IPS[1], throttled=True,
          app=EXO, capp=ONE_OUTLOOK_WEB, cinfo=ACTOR_CLIENT)
rec["AppAccessContext"] = {"AADSessionId": ACTOR_SESSION, "UniqueTokenId": tok()}
exchange.append(rec)
sharepoint.append(sp_record(VICTIM, d2 + dt.timedelta(hours=2), None, PROXY_IPS[1], ACTOR_UA, "delegation-briefing.pdf"))
d3 = dt.datetime(2023, 6, 21, 0, 40, tzinfo=dt.timezone.utc)
admin.append(admin_record(ADMIN, d3, PROXY_IPS[0], "Set-MailboxAuditBypassAssociation",
                          [("Identity", upn(VICTIM)), ("AuditBypassEnabled", "True")]))
admin.append(admin_record(ADMIN, d3 + dt.timedelta(minutes=4), PROXY_IPS[0], "Set-AdminAuditLogConfig",
                          [("UnifiedAuditLogIngestionEnabled", "False")]))
gateway.append({"time": "2023-06-19T02:31:07Z", "client_ip": PANEL_IP, "sub": upn(VICTIM),
                "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "tid": TENANT,
                "aud": "api://contoso-records", "kid": MSA_KID, "alg": "RS256", "decision": "allow",
                "path": "/records/export"})

# ---- write the exports ----------------------------------------------------
os.makedirs(os.path.join(OUT, "ual"), exist_ok=True)
os.makedirs(os.path.join(OUT, "purview"), exist_ok=True)
os.makedirs(os.path.join(OUT, "entra"), exist_ok=True)
os.makedirs(os.path.join(OUT, "app-gateway"), exist_ok=True)
key = lambda r: r.get("CreationTime") or r.get("createdDateTime") or r.get("time")

# UAL Exchange: Management Activity API records, one per line (collector output).
exchange.sort(key=key)
with open(os.path.join(OUT, "ual", "exchange.jsonl"), "w", newline="\n") as f:
    for r in exchange:
        r = {k: v for k, v in r.items() if v is not None}
        f.write(json.dumps(r, separators=(",", ":")) + "\n")

# UAL SharePoint: API content blobs (JSON arrays), gzip-compressed, one per day.
sharepoint.sort(key=key)
with gzip.GzipFile(os.path.join(OUT, "ual", "sharepoint-content.json.gz"), "wb", mtime=0) as g:
    g.write(json.dumps(sharepoint, indent=4).encode())

# Exchange admin audit: Purview audit-search CSV export (AuditData JSON in a cell), CRLF.
admin.sort(key=key)
with open(os.path.join(OUT, "purview", "exchange-admin-audit.csv"), "w", newline="") as f:
    def q(s):
        return '"' + str(s).replace('"', '""') + '"'
    f.write("RecordId,CreationDate,RecordType,Operation,UserId,AuditData,AssociatedAdminUnits,AssociatedAdminUnitsNames\r\n")
    for r in admin:
        t = dt.datetime.strptime(r["CreationTime"], "%Y-%m-%dT%H:%M:%S")
        cd = f"{t.month}/{t.day}/{t.year} {(t.hour % 12) or 12}:{t.minute:02d}:{t.second:02d} {'AM' if t.hour < 12 else 'PM'}"
        f.write(",".join([r["Id"], cd, "1", r["Operation"], r["UserId"], q(json.dumps(r, separators=(",", ":"))), "", ""]) + "\r\n")

# Interactive sign-ins: Graph signIn page as Graph PowerShell saves it (UTF-8 BOM, pretty).
interactive.sort(key=key)
with open(os.path.join(OUT, "entra", "signins-interactive.json"), "w", encoding="utf-8-sig", newline="\n") as f:
    json.dump({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",
               "value": interactive}, f, indent=2)

# Non-interactive sign-ins: Azure Monitor diagnostic export (PT1H.json JSON lines).
noninteractive.sort(key=key)
with open(os.path.join(OUT, "entra", "signins-noninteractive-PT1H.json"), "w", newline="\n") as f:
    for r in noninteractive:
        env = {"time": r["createdDateTime"][:19] + ".0000000Z",
               "resourceId": f"/tenants/{TENANT}/providers/Microsoft.aadiam",
               "operationName": "Sign-in activity", "operationVersion": "1.0",
               "category": "NonInteractiveUserSignInLogs", "tenantId": TENANT, "resultType": "0",
               "callerIpAddress": r["ipAddress"], "correlationId": r["correlationId"],
               "identity": r["userDisplayName"], "Level": 4, "properties": r}
        f.write(json.dumps(env, separators=(",", ":")) + "\n")

# Line-of-business API gateway: JWT header log (app-side, JSON lines).
gateway.sort(key=key)
with open(os.path.join(OUT, "app-gateway", "jwt-validation.jsonl"), "w", newline="\n") as f:
    for r in gateway:
        f.write(json.dumps(r, separators=(",", ":")) + "\n")

# tokenward gateway in front of contoso-hr: its access log (docs/gateway.md).
# A separate generator, so the files above keep their bytes.
G = random.Random(5580)
HR_ISS = f"https://login.microsoftonline.com/{TENANT}/v2.0"


def gw_line(t, ip, verdict, reasons, kid, user, iss, tid, path="/hr/employees", cached=False):
    ok = verdict == "accepted"
    u = upn(user) if user else None
    return {"time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
            "client_ip": ip, "peer_ip": "10.0.0.4", "x_forwarded_for": [ip], "method": "GET",
            "path": path, "status": 200 if ok else 401, "upstream_status": 200 if ok else None,
            "latency_ms": round(G.uniform(0.08, 2.5) if ok else G.uniform(0.05, 0.3), 3),
            "verdict": verdict, "reasons": reasons, "cached": cached, "error": None,
            "kid": kid, "x5t": None, "alg": "RS256" if kid else None, "iss": iss, "tid": tid,
            "aud": ["api://contoso-hr"] if kid else None, "sub": u, "oid": None, "appid": None,
            "azp": OFFICE if kid else None, "client_id": None,
            "uti": G.randbytes(11).hex() if kid else None, "jti": None,
            "sid": str(uuid.UUID(int=G.getrandbits(128), version=4)) if kid else None,
            "iat": int(t.timestamp()) - 300 if kid else None, "nbf": int(t.timestamp()) - 300 if kid else None,
            "exp": int(t.timestamp()) + 3300 if kid else None,
            "token_sha256_prefix": G.randbytes(8).hex() if kid else None}


access = []
LEGIT_KIDS = ["-KI3Q9nNR7bRofxmeZoXqbHZGew", "DqUu8gf-nAgcyjP3-SuplNAXAnc"]
for day in range(14, 28):
    for name, u in USERS.items():
        d0 = START + dt.timedelta(days=day)
        if d0.weekday() >= 5:
            continue
        for _ in range(G.randint(2, 6)):
            t = d0 + dt.timedelta(hours=G.randint(8, 17), minutes=G.randint(0, 59),
                                  seconds=G.randint(0, 59), milliseconds=G.randint(0, 999))
            access.append(gw_line(t, u["ip"], "accepted", [], G.choice(LEGIT_KIDS), name, HR_ISS, TENANT))
        if G.random() < 0.3:
            # A laptop waking up with an expired token: refused once, then renewed.
            t = d0 + dt.timedelta(hours=8, minutes=G.randint(0, 59))
            access.append(gw_line(t, u["ip"], "rejected", ["token-expired"], G.choice(LEGIT_KIDS), name, HR_ISS, TENANT))
    access.append(gw_line(START + dt.timedelta(days=day, hours=12), "192.0.2.200", "not-required", [], None, None, None, None,
                          path="/healthz"))
# The intruder, from a SoftEther proxy, with dan's forged session: the
# MSA-signed token (refused: key out of scope), then forgeries naming
# other keys (unknown kids, the tenant's own kids with a bad signature).
t = dt.datetime(2023, 6, 19, 3, 2, 11, tzinfo=dt.timezone.utc)
for i in range(24):
    t += dt.timedelta(seconds=G.randint(3, 9), milliseconds=G.randint(0, 999))
    if i < 2:
        r = gw_line(t, PROXY_IPS[0], "rejected", ["key-out-of-scope"], MSA_KID, VICTIM, HR_ISS, TENANT)
    elif i % 2:
        r = gw_line(t, PROXY_IPS[0], "rejected", ["kid-unknown"], G.randbytes(20).hex()[:27], VICTIM, HR_ISS, TENANT)
    else:
        r = gw_line(t, PROXY_IPS[0], "rejected", ["signature-invalid"], G.choice(LEGIT_KIDS), VICTIM, HR_ISS, TENANT)
    r["sid"] = ACTOR_SESSION
    access.append(r)
os.makedirs(os.path.join(OUT, "tokenward-gateway"), exist_ok=True)
access.sort(key=lambda r: r["time"])
with open(os.path.join(OUT, "tokenward-gateway", "access.jsonl"), "w", newline="\n") as f:
    for r in access:
        f.write(json.dumps(r, separators=(",", ":")) + "\n")

print(f"wrote {OUT}: {len(exchange)} Exchange, {len(sharepoint)} SharePoint, {len(admin)} admin, "
      f"{len(interactive)} interactive + {len(noninteractive)} non-interactive sign-ins, {len(gateway)} gateway, {len(access)} tokenward gateway")
