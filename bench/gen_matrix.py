#!/usr/bin/env python3
"""Benchmark-matrix input generator for `tokenward hunt` (and the Chainsaw anchor).

Usage: gen_matrix.py SHAPE SIZE_MB OUT_DIR [--no-twin | --twin-only] [--seed=N]

SHAPE is one of
  signin       Entra sign-ins only: Microsoft Graph `signIn` JSON lines
               (signins-graph-*.jsonl, the tenants that export with Graph) and
               Azure Monitor diagnostic JSON lines (PT1H-*.json, the tenants
               with a diagnostic setting), about 70 % non-interactive,
               20 % interactive, 10 % service principal.
  ual          Management Activity API records as JSON lines
               (ual-<tenant>-<content type>-<day>.jsonl): 40-odd operations over
               Exchange, SharePoint, OneDrive, AzureActiveDirectory and
               MicrosoftTeams; CreationTime without a zone, as the API writes it.
  purview-csv  the same UAL records as Purview audit-search CSV exports
               (RecordId,CreationDate,RecordType,Operation,UserId,AuditData,
               AssociatedAdminUnits,AssociatedAdminUnitsNames), 50,000 rows a file.
  ual-powershell
               the records of `ual` (same seed, same records) as an
               investigator saves them from an Exchange Online PowerShell
               session: `Search-UnifiedAuditLog ... | ConvertTo-Json | Out-File`
               (Search-UnifiedAuditLog-<tenant>-<day>.json). Windows PowerShell
               writes that as UTF-16 LE with a BOM and CRLF line ends, a JSON
               array pretty-printed with 4-space indents and two spaces after
               each colon, one object per record with AuditData as a JSON
               string beside RecordType (a number), CreationDate
               (`\/Date(ms)\/`), UserIds, Operations, ResultIndex and
               ResultCount. SIZE_MB counts the records as UTF-8 JSON lines
               (the bytes of `ual`); the files are about 2.8 times that, and
               the UTF-8 they hold (what matrix_report.py counts) 1.4 times.
  gzip         half UAL, half sign-ins (the sign-ins that issued the UAL
               records' tokens, plus background), every file gzip-compressed
               (*.jsonl.gz). SIZE_MB counts uncompressed bytes.
  mail         the MailItemsAccessed-heavy shape of bench/hunt_gen.py (it runs it).
  la-csv       the sign-ins of `signin` (same seed, same records) as the Log
               Analytics portal's "Export to CSV" writes query results
               (<Table>-<tenant>-<day>.csv): a UTF-8 BOM, CRLF, the columns of
               the SigninLogs, AADNonInteractiveUserSignInLogs and
               AADServicePrincipalSignInLogs tables in a real export's order,
               times in `X [UTC]` columns as `M/D/YYYY, h:mm:ss.fff AM`, and
               SigninLogs' dynamic columns split into `X_dynamic` and
               `X_string` (the other tables hold those as JSON text under
               their own names). SIZE_MB counts the records as JSON lines
               (the bytes of `signin`); the files hold about 0.65 times that.
  entra-audit  Entra ID directory audits and Azure Activity, the logs most
               SigmaHQ cloud rules read (audit_logs, activity_logs): about 64 %
               of records directory audits over 30-odd activities, mostly
               directory sync, group and device changes, with a few
               consents, credential, role and policy changes (Azure Monitor
               `AuditLogs` JSON lines, PT1H-AuditLogs-*.json, and Graph
               `directoryAudit` JSON lines, directoryAudits-*.jsonl, as the
               tenant exports), the rest Azure Activity control-plane records
               (PT1H-Administrative-*.json) with the caller's token claims,
               a Start and an end record per write.
  signin-envelope
               the sign-ins of `signin` (same seed, same records) as envelopes:
               Azure Monitor `{"records":[...]}` on one line per file (as an
               Event Hubs or storage export writes it) and Graph pages
               `{"@odata.context":...,"value":[...]}` pretty-printed a record
               a line (as Graph PowerShell's ConvertTo-Json writes a page),
               one envelope per file. Chainsaw reads such a file as one
               document, so it gets no twin.

The generator simulates users, sessions and tokens, not the detections of any
tool: UAL records carry the AADSessionId/UniqueTokenId of the (simulated)
sign-in that issued them, whether or not the shape writes that sign-in.
Deterministic (fixed seeds), standard library only, streaming (memory stays
small whatever SIZE_MB is). --seed=N (default 0) adds N to every seed: the same
shape from other tenants, users and records, for data that must not be the
benchmark's own (bench/pgo_build.sh trains on it).

Chainsaw twin: Chainsaw (2.16) parses record times only as
%Y-%m-%dT%H:%M:%S%.fZ, reads `.json` files as one JSON document (so a JSON-lines
PT1H.json blob fails) and reads neither CSV nor gzip. Unless --no-twin is given,
OUT_DIR.chainsaw/ is written next to OUT_DIR for the shapes Chainsaw can read:
files it reads unchanged are symbolic links to the same bytes (a `.json` JSON
lines file is linked under a `.jsonl` name); UAL files are copies whose
top-level CreationTime gets `.0000000Z` appended (the form Defender's
RawEventData carries), every other byte unchanged. The script says which.
"""

import base64
import csv
import gzip
import io
import json
import os
import random
import subprocess
import sys
import time
import zlib

BASE = 1709251200  # 2024-03-01T00:00:00Z
SPAN_DAYS = 30
SPAN = SPAN_DAYS * 86400
DAY = [time.strftime("%Y-%m-%d", time.gmtime(BASE + d * 86400)) for d in range(SPAN_DAYS + 3)]
DAYC = [d.replace("-", "") for d in DAY]
HMS = ["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
GZIP_BIN = next((p for p in ("/usr/bin/gzip", "/bin/gzip") if os.access(p, os.X_OK)), None)
SEED = {"signin": 11, "ual": 22, "purview-csv": 33, "gzip": 44, "entra-audit": 55}

# --------------------------------------------------------------------------
# Random helpers (one Random per run; everything below draws from R).
R = random.Random(0)


def seed_offset():
    """N of --seed=N (0 without it): added to every seed."""
    for a in sys.argv[1:]:
        if a.startswith("--seed="):
            return int(a[len("--seed="):])
    return 0
_rb = R.getrandbits


def guid():
    h = "%032x" % _rb(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[_rb(2)]}{h[17:20]}-{h[20:]}"


def tok():
    return base64.urlsafe_b64encode(_rb(128).to_bytes(16, "little")).decode()[:22]


def hexu(n):
    return "%0*X" % (n, _rb(4 * n))


def pick(seq):
    return seq[_rb(30) % len(seq)]


def iso(sec):
    d, s = divmod(sec - BASE, 86400)
    return DAY[d] + "T" + HMS[s]


def frac7():
    return "%07d" % (_rb(24) % 10000000)


def weighted_table(items, weights, bits=14):
    """A lookup table for fast weighted draws: table[_rb(bits)]."""
    n = 1 << bits
    total = float(sum(weights))
    out, acc, i = [], 0.0, 0
    cum = []
    for w in weights:
        acc += w / total
        cum.append(acc)
    for k in range(n):
        x = (k + 0.5) / n
        while i < len(cum) - 1 and x > cum[i]:
            i += 1
        out.append(items[i])
    return out


def wpick(table, bits=14):
    return table[_rb(bits)]


# --------------------------------------------------------------------------
# The world: tenants, users, devices, addresses, apps.
FIRST = ("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
         "Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra "
         "Mark Margaret Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol "
         "Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura "
         "Jeffrey Cynthia Ryan Amy Jacob Kathleen Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda "
         "Stephen Pamela Larry Emma Justin Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel "
         "Christine Gregory Debra Alexander Rachel Frank Carolyn Patrick Janet Raymond Catherine Jack Maria "
         "Dennis Heather Jerry Diane Tyler Ruth Aaron Julie Jose Olivia Adam Joyce Nathan Virginia Henry "
         "Victoria Zachary Kelly Douglas Lauren Peter Christina Kyle Joan Noah Evelyn Ethan Judith Jeremy "
         "Megan Walter Andrea Christian Cheryl Keith Hannah Roger Jacqueline Terry Martha Austin Gloria Sean "
         "Teresa Gerald Ann Carl Sara Harold Madison Dylan Frances Arthur Kathryn Lawrence Janice Jordan Jean "
         "Jesse Abigail Bryan Alice Billy Judy Bruce Sophia Gabriel Grace Joe Denise Logan Amber Alan Doris "
         "Juan Marilyn Albert Danielle Willie Beverly Elijah Isabella Wayne Theresa Randy Diana Vincent "
         "Natalie Mason Brittany Roy Charlotte Ralph Marie Bobby Kayla Russell Alexis Bradley Lori "
         "Hiroshi Yuki Wei Mei Arjun Priya Mohammed Fatima Lukas Lena Mateo Sofia Oliver Amelia Liam Chloe "
         "Ingrid Sven Pierre Camille Giulia Marco Aleksander Zofia Tomasz Olga Dmitri Anya Kwame Ama").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
        "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
        "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
        "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
        "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
        "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James "
        "Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster "
        "Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher "
        "Vasquez Simmons Romero Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno "
        "West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall "
        "Owens Harrison Fernandez McDonald Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb "
        "Tanaka Suzuki Sato Wang Li Zhang Liu Kumar Singh Sharma Muller Schmidt Schneider Fischer Weber "
        "Dubois Laurent Rossi Russo Kowalski Nowak Ivanov Petrov Andersson Johansson Larsen Mensah Okafor").split()

# (city, state, country code, latitude, longitude)
CITIES = [
    ("Seattle", "Washington", "US", 47.6062, -122.3321), ("Redmond", "Washington", "US", 47.674, -122.1215),
    ("New York", "New York", "US", 40.7128, -74.006), ("Chicago", "Illinois", "US", 41.8781, -87.6298),
    ("Austin", "Texas", "US", 30.2672, -97.7431), ("Dallas", "Texas", "US", 32.7767, -96.797),
    ("Atlanta", "Georgia", "US", 33.749, -84.388), ("Denver", "Colorado", "US", 39.7392, -104.9903),
    ("San Jose", "California", "US", 37.3382, -121.8863), ("Los Angeles", "California", "US", 34.0522, -118.2437),
    ("Boston", "Massachusetts", "US", 42.3601, -71.0589), ("Columbus", "Ohio", "US", 39.9612, -82.9988),
    ("Toronto", "Ontario", "CA", 43.6532, -79.3832), ("Vancouver", "British Columbia", "CA", 49.2827, -123.1207),
    ("London", "England", "GB", 51.5072, -0.1276), ("Manchester", "England", "GB", 53.4808, -2.2426),
    ("Dublin", "Dublin", "IE", 53.3498, -6.2603), ("Paris", "Ile-de-France", "FR", 48.8566, 2.3522),
    ("Berlin", "Berlin", "DE", 52.52, 13.405), ("Munich", "Bayern", "DE", 48.1351, 11.582),
    ("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041), ("Madrid", "Madrid", "ES", 40.4168, -3.7038),
    ("Milan", "Lombardia", "IT", 45.4642, 9.19), ("Stockholm", "Stockholms Lan", "SE", 59.3293, 18.0686),
    ("Warsaw", "Mazowieckie", "PL", 52.2297, 21.0122), ("Zurich", "Zurich", "CH", 47.3769, 8.5417),
    ("Bangalore", "Karnataka", "IN", 12.9716, 77.5946), ("Mumbai", "Maharashtra", "IN", 19.076, 72.8777),
    ("Singapore", "Singapore", "SG", 1.3521, 103.8198), ("Tokyo", "Tokyo", "JP", 35.6762, 139.6503),
    ("Sydney", "New South Wales", "AU", -33.8688, 151.2093), ("Melbourne", "Victoria", "AU", -37.8136, 144.9631),
    ("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333), ("Mexico City", "Ciudad de Mexico", "MX", 19.4326, -99.1332),
    ("Johannesburg", "Gauteng", "ZA", -26.2041, 28.0473), ("Accra", "Greater Accra", "GH", 5.6037, -0.187),
]
DC_CITIES = [("Boydton", "Virginia", "US", 36.6676, -78.3875), ("Quincy", "Washington", "US", 47.2343, -119.8526),
             ("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041), ("Dublin", "Dublin", "IE", 53.3498, -6.2603),
             ("San Antonio", "Texas", "US", 29.4241, -98.4936), ("Singapore", "Singapore", "SG", 1.3521, 103.8198)]
V4_FIRST = [24, 31, 37, 46, 50, 62, 66, 67, 68, 69, 71, 72, 73, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 86,
            87, 88, 89, 90, 92, 93, 94, 95, 96, 97, 98, 99, 104, 107, 108, 109, 136, 141, 145, 151, 162, 166,
            172, 173, 174, 176, 178, 188, 190, 194, 197, 201, 212, 213, 217]
V6_PREFIX = ["2601:%x:%x" , "2600:1700:%x", "2a02:c7c:%x", "2003:e5:%x", "2a01:cb00:%x", "2405:201:%x",
             "2001:569:%x", "2a00:23c8:%x", "2806:2f0:%x", "2404:4400:%x"]
CLOUD_V4 = [4, 13, 20, 23, 40, 51, 52, 104, 137, 168, 3, 18, 34, 35]


UA = {
    "edge_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.{b}.{p}",
    "chrome_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "chrome_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "safari_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Safari/605.1.15",
    "firefox_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "safari_ios": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_{m} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{m} Mobile/15E148 Safari/604.1",
    "chrome_android": "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.6261.{p} Mobile Safari/537.36",
}
UA_OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.{b}; Pro)"
UA_ONEDRIVE = "Microsoft SkyDriveSync 24.0{m}0.0{d}.000{p} ship; Windows NT 10.0 (19045)"
UA_TEAMS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0 Teams/24004.1307.2669.7070/49"
UA_MSAL = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; WebView/3.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045"
UA_IOS_OUTLOOK = "Outlook-iOS/2.0"
UA_ANDROID_OUTLOOK = "Outlook-Android/2.0"
UA_RARE = ["python-requests/2.31.0", "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.19045; en-US) PowerShell/7.4.1",
           "azurehound/v2.1.7", "axios/1.6.7", "curl/8.4.0", "Go-http-client/1.1",
           "Mozilla/5.0 (compatible; MSAL 1.0) PKeyAuth/1.0", "Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A.230901.001)"]

# (appId, displayName)
APP = {
    "office": ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office"),
    "officehome": ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome"),
    "owa": ("9199bf20-a13f-4107-85dc-02114787ef48", "One Outlook Web"),
    "teams": ("1fec8e78-bce4-4aaf-ab1b-5451cc387264", "Microsoft Teams"),
    "teamsweb": ("5e3ce6c0-2b1f-4285-8d4b-75ee78787346", "Microsoft Teams Web Client"),
    "outlookmobile": ("27922004-5251-4030-b22d-91ecd9a37ea4", "Outlook Mobile"),
    "onedrive": ("ab9b8c07-8f02-4f72-87fa-80105867a763", "OneDrive SyncEngine"),
    "broker": ("29d9ed98-a469-4536-ade2-f981bc1d605e", "Microsoft Authentication Broker"),
    "winsignin": ("38aa3b87-a06d-4817-b275-7a316988d93b", "Windows Sign In"),
    "portal": ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal"),
    "azcli": ("04b07795-8ddb-461a-bbee-02f9e1bf7b46", "Microsoft Azure CLI"),
    "azps": ("1950a258-227b-4e31-a9cf-717495945fc2", "Microsoft Azure PowerShell"),
    "exops": ("fb78d390-0c51-40cd-8e17-fdbfab77341b", "Microsoft Exchange REST API Based Powershell"),
    "edge": ("ecd6b820-32c2-49b6-98a6-444530e5a77a", "Microsoft Edge"),
    "mysignins": ("19db86c3-b2b9-44cc-b339-36da233a3be2", "My Signins"),
    "graphexplorer": ("de8bc8b5-d9f9-48b1-a8ad-b748da725064", "Graph Explorer"),
}
RES = {
    "exo": ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online"),
    "spo": ("00000003-0000-0ff1-ce00-000000000000", "Office 365 SharePoint Online"),
    "graph": ("00000003-0000-0000-c000-000000000000", "Microsoft Graph"),
    "aad": ("00000002-0000-0000-c000-000000000000", "Windows Azure Active Directory"),
    "teams": ("cc15fd57-2c6c-4117-a88c-83b1d56b4bbe", "Microsoft Teams Services"),
    "arm": ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Windows Azure Service Management API"),
    "drs": ("01cb2876-7ebd-4aa4-9cc9-d28bd4d359a9", "Device Registration Service"),
    "shell": ("5f09333a-842c-47da-a157-57da27fcbca5", "Office365 Shell WCSS-Server"),
    "kv": ("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Azure Key Vault"),
    "storage": ("e406a681-f3d4-42a8-90b6-c2b029497af1", "Azure Storage"),
}
# (client key, resource key, clientAppUsed, device class) for user sign-ins
USER_FLOWS_NI = [("office", "exo", 20), ("office", "spo", 12), ("office", "graph", 8), ("teams", "teams", 12),
                 ("teams", "graph", 6), ("onedrive", "spo", 10), ("outlookmobile", "exo", 6),
                 ("broker", "aad", 5), ("owa", "exo", 6), ("officehome", "shell", 4), ("edge", "graph", 3),
                 ("teamsweb", "teams", 2), ("office", "aad", 3)]
USER_FLOWS_I = [("officehome", "shell", 25), ("owa", "exo", 20), ("office", "exo", 15), ("teams", "teams", 10),
                ("winsignin", "aad", 10), ("broker", "drs", 3), ("mysignins", "graph", 3), ("edge", "graph", 5),
                ("teamsweb", "teams", 5), ("outlookmobile", "exo", 4)]
ADMIN_FLOWS = [("portal", "arm", 5), ("azcli", "arm", 2), ("azps", "arm", 2), ("exops", "exo", 2),
               ("graphexplorer", "graph", 1)]

FLOW_NI = weighted_table(USER_FLOWS_NI, [f[2] for f in USER_FLOWS_NI])
FLOW_I = weighted_table(USER_FLOWS_I, [f[2] for f in USER_FLOWS_I])
FLOW_ADMIN = weighted_table(ADMIN_FLOWS, [f[2] for f in ADMIN_FLOWS])

ERR = {
    0: "Other.",
    50126: "Error validating credentials due to invalid username or password.",
    50074: "Strong Authentication is required.",
    50140: "This error occurred due to 'Keep me signed in' interrupt when the user was signing in.",
    530032: "User blocked due to risk on home tenant.",
    50076: "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource.",
    70044: "The session has expired or is invalid due to sign-in frequency checks by conditional access.",
    50053: "Account is locked because user tried to sign in too many times with an incorrect user ID or password.",
    50057: "User account is disabled. The account has been disabled by an administrator.",
    53003: "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
    500121: "Authentication failed during strong authentication request.",
    50133: "Session is invalid due to expiration or recent password change.",
    65001: "The user or administrator has not consented to use the application.",
    50055: "Invalid password, entered expired password.",
    50089: "Flow token expired - Authentication Failed. Have the user try signing-in again with username -password",
    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
    16000: "Either multiple user identities are available for the current request or selected account is not supported for the scenario.",
    7000215: "Invalid client secret is provided.",
    700016: "Application with identifier was not found in the directory.",
    50158: "External security challenge was not satisfied.",
}
ERR_I = weighted_table([0, 50140, 50126, 50074, 50076, 53003, 500121, 50053, 50057, 530032, 65001, 50055, 50089, 16000, 50158],
                       [790, 50, 45, 40, 20, 10, 10, 5, 3, 3, 5, 3, 5, 6, 1])
ERR_NI = weighted_table([0, 50173, 70044, 50133, 50076, 53003, 50074, 530032, 65001],
                        [930, 15, 15, 10, 10, 5, 5, 2, 8])
ERR_SP = weighted_table([0, 7000215, 700016], [970, 20, 10])

TENANT_SPECS = [  # name, verified domain, weight, sign-in export channel
    ("contoso", "contoso.com", 0.33, "azmon"), ("fabrikam", "fabrikam.com", 0.25, "graph"),
    ("northwind", "northwindtraders.com", 0.20, "azmon"), ("adatum", "adatum.com", 0.13, "graph"),
    ("wingtip", "wingtiptoys.com", 0.09, "azmon"),
]
N_USERS = 6000
CA_POLICY_NAMES = ["Require MFA for admins", "Block legacy authentication", "Require compliant device for Office 365",
                   "Require MFA outside trusted locations", "Sign-in frequency 12h for unmanaged devices",
                   "Block access from sanctioned countries", "Require app protection policy on mobile",
                   "Report-only: require phishing-resistant MFA"]
CA_RESULTS = ["success", "notApplied", "notApplied", "notApplied", "reportOnlyNotApplied", "notEnabled"]


class World:
    """Everything that does not change per record. Built from its own seed, so
    every shape sees the same tenants and users."""

    def __init__(self):
        W = random.Random(20240301 + seed_offset())
        g = lambda: str(__import__("uuid").UUID(int=W.getrandbits(128), version=4))
        self.tenants = []
        for name, dom, w, chan in TENANT_SPECS:
            t = {"name": name, "domain": dom, "weight": w, "channel": chan, "id": g(),
                 "org": name + ".onmicrosoft.com", "sid": "S-1-5-21-%d-%d-%d" % (W.randint(10**9, 4 * 10**9), W.randint(10**9, 4 * 10**9), W.randint(10**9, 4 * 10**9)),
                 "office_ips": [rand_v4_w(W) for _ in range(W.randint(3, 8))],
                 "home_cities": W.sample(range(len(CITIES)), 6),
                 "sites": ["https://%s.sharepoint.com/sites/%s" % (name, s) for s in W.sample(
                     ["Finance", "HR", "Marketing", "Sales", "Engineering", "Legal", "ITOps", "Projects", "Executive",
                      "Procurement", "Support", "Research", "Design", "Operations", "Compliance", "Training",
                      "Communications", "Partners", "Strategy", "Facilities"], 14)],
                 "server": W.choice(["BN0PR11MB", "DM6PR11MB", "SA1PR12MB", "AM6PR04MB", "DB8PR06MB", "PH0PR19MB"]),
                 "ca": [(g(), n) for n in W.sample(CA_POLICY_NAMES, W.randint(3, 7))],
                 "sps": []}
            for k in range(W.randint(25, 60)):
                t["sps"].append({"appId": g(), "spId": g(), "name": W.choice(
                    ["Backup", "HR Sync", "Ticketing", "Payroll", "CRM Connector", "Log Forwarder", "Data Pipeline",
                     "Build Agent", "Monitoring", "Signing Service", "Intranet", "Reporting"]) + " " + str(k),
                    "cred": W.choice(["clientSecret", "clientAssertion", "certificate"]), "keyId": g(),
                    "thumb": "%040X" % W.getrandbits(160), "ip": rand_v4_w(W, W.choice(CLOUD_V4)),
                    "res": W.choice(["graph", "graph", "arm", "kv", "storage", "spo", "exo"]),
                    "city": W.choice(DC_CITIES)})
            self.tenants.append(t)
        tw = [t["weight"] for t in self.tenants]
        self.users = []
        used = set()
        for i in range(N_USERS):
            t = W.choices(self.tenants, tw)[0]
            fn, ln = W.choice(FIRST), W.choice(LAST)
            base = f"{fn}.{ln}".lower()
            name = base
            n = 1
            while (name, t["name"]) in used:
                n += 1
                name = f"{base}{n}"
            used.add((name, t["name"]))
            guest = W.random() < 0.03
            upn = f"{name}@{t['domain']}"
            if guest:
                upn = f"{name}_{W.choice(['gmail.com', 'outlook.com', 'partner.example'])}#EXT#@{t['org']}"
            city = CITIES[W.choice(t["home_cities"])] if W.random() < 0.85 else W.choice(CITIES)
            v6 = W.random() < 0.18
            u = {"i": i, "t": t, "upn": upn, "upn_case": upn if W.random() < 0.7 else f"{fn}.{ln}@{t['domain']}",
                 "name": f"{fn} {ln}", "oid": g(), "puid": "1003%012X" % W.getrandbits(48),
                 "rid": W.randint(1000, 9_999_999), "mbx": g(), "guest": guest,
                 "admin": W.random() < 0.012, "city": city, "home_ip": rand_v6_w(W) if v6 else rand_v4_w(W),
                 "mobile_ip": rand_v6_w(W) if W.random() < 0.5 else rand_v4_w(W),
                 "asn": W.choice([7922, 7018, 701, 20115, 22773, 3320, 2856, 5089, 3215, 1136, 6830, 4134, 9498, 7545, 1221, 12322]),
                 "devices": [], "mail": []}
            for _ in range(W.choice([1, 1, 2, 2, 3])):
                u["devices"].append(make_device(W, fn))
            u["mail"].append(W.choice(MAIL_CLIENTS_MAIN))
            if W.random() < 0.45:
                u["mail"].append(W.choice(MAIL_CLIENTS_MORE))
            if W.random() < 0.03:
                u["mail"].append(MAIL_CLIENT_REST_SYSTEM)
            self.users.append(u)
        self.admins = [u for u in self.users if u["admin"] and not u["guest"]] or self.users[:5]
        # Activity is heavy-tailed: a few users make most of the records.
        weights = [W.paretovariate(1.3) for _ in self.users]
        self.user_table = weighted_table(self.users, weights, bits=16)
        self.roam_ips = [rand_v6_w(W) if W.random() < 0.2 else rand_v4_w(W) for _ in range(30000)]


def rand_v4_w(W, first=None):
    a = first if first is not None else W.choice(V4_FIRST)
    return "%d.%d.%d.%d" % (a, W.getrandbits(8), W.getrandbits(8), W.randint(1, 254))


def rand_v6_w(W):
    p = W.choice(V6_PREFIX)
    p = p % tuple(W.getrandbits(16) for _ in range(p.count("%x")))
    return p + ":" + ":".join("%x" % W.getrandbits(16) for _ in range(8 - p.count(":") - 1))


def make_device(W, fn):
    kind = W.choices(["win_managed", "win_hybrid", "win_byod", "mac", "ios", "android"], [35, 20, 10, 12, 15, 8])[0]
    v = W.randint(118, 124)
    d = {"kind": kind}
    if kind.startswith("win"):
        managed = kind != "win_byod"
        d.update(os="Windows10", deviceId=str(__import__("uuid").UUID(int=W.getrandbits(128), version=4)) if managed else "",
                 displayName=(W.choice(["DESKTOP-", "LT-", "WS-"]) + "%07X" % W.getrandbits(28)) if managed else "",
                 trustType={"win_managed": "Azure AD joined", "win_hybrid": "Hybrid Azure AD joined", "win_byod": ""}[kind],
                 isManaged=managed, isCompliant=managed and W.random() < 0.9,
                 browser="Edge %d.0.%d" % (v, W.randint(2000, 2400)),
                 ua=(UA["edge_win"] if W.random() < 0.7 else UA["chrome_win"]).format(v=v, b=W.randint(2000, 2400), p=W.randint(30, 120), f=v, m=2),
                 app_ua=UA_OUTLOOK.format(b=W.randint(17126, 17531)), rich="Rich Client 5.2.%d.0" % W.randint(5, 9))
    elif kind == "mac":
        d.update(os="MacOs", deviceId="", displayName="", trustType="", isManaged=False, isCompliant=False,
                 browser="Safari 17.%d" % W.randint(1, 4), ua=UA["safari_mac"].format(m=W.randint(1, 4)),
                 app_ua="Microsoft Outlook 16.%d (Mac)" % W.randint(80, 83), rich="Rich Client 4.61.0.0")
    elif kind == "ios":
        d.update(os="Ios", deviceId=str(__import__("uuid").UUID(int=W.getrandbits(128), version=4)) if W.random() < 0.5 else "",
                 displayName="iPhone" if W.random() < 0.5 else "", trustType="Azure AD registered" if W.random() < 0.5 else "",
                 isManaged=False, isCompliant=False, browser="Mobile Safari 17.%d" % W.randint(1, 4),
                 ua=UA["safari_ios"].format(m=W.randint(1, 4)), app_ua=UA_IOS_OUTLOOK, rich="Rich Client 4.59.0.0")
    else:
        d.update(os="Android", deviceId="", displayName="", trustType="", isManaged=False, isCompliant=False,
                 browser="Chrome Mobile %d.0.6261" % v, ua=UA["chrome_android"].format(v=v, p=W.randint(60, 150)),
                 app_ua=UA_ANDROID_OUTLOOK, rich="Rich Client 4.59.0.0")
    return d


# Mail clients: (AppId, ClientAppId, ClientInfoString, app key for the token)
MAIL_CLIENTS_MAIN = [
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "d3590ed6-52b3-4102-aeff-aad2292ab01c", "Client=MSExchangeRPC", "office"),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "d3590ed6-52b3-4102-aeff-aad2292ab01c", "Client=MSExchangeRPC", "office"),
    ("00000002-0000-0ff1-ce00-000000000000", "9199bf20-a13f-4107-85dc-02114787ef48", "Client=OWA;Action=ViaProxy", "owa"),
]
MAIL_CLIENTS_MORE = [
    ("27922004-5251-4030-b22d-91ecd9a37ea4", "27922004-5251-4030-b22d-91ecd9a37ea4", "Client=OutlookService;Outlook-iOS/2.0;", "outlookmobile"),
    ("27922004-5251-4030-b22d-91ecd9a37ea4", "27922004-5251-4030-b22d-91ecd9a37ea4", "Client=OutlookService;Outlook-Android/2.0;", "outlookmobile"),
    ("00000002-0000-0ff1-ce00-000000000000", "9199bf20-a13f-4107-85dc-02114787ef48", "Client=OWA;Action=ViaProxy", "owa"),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "d3590ed6-52b3-4102-aeff-aad2292ab01c", "Client=Microsoft Outlook for Mac", "office"),
]
MAIL_CLIENT_REST_SYSTEM = ("8a18aa92-4a32-4c11-9d58-2a9a1b5d2e6f", "3c8e478f-8b6e-4d8f-a0f0-7f1e9cc1a234", "Client=REST;Client=RESTSystem;;", "office")

# --------------------------------------------------------------------------
# Output: files keyed by name, opened lazily, closed when their day is over.


GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns"


# The columns of a SigninLogs export from the Log Analytics portal (a real
# export's header, tests/fixtures/logs/azure-sentinel-training-lab/
# sign-in_adelete.csv, with the table's TimeGenerated, UniqueTokenIdentifier
# and SessionId columns, which that query projected away).
LA_COLUMNS = (
    "TenantId,TimeGenerated [UTC],SourceSystem,ResourceId,OperationName,OperationVersion,Category,ResultType,"
    "ResultSignature,ResultDescription,DurationMs,CorrelationId,Resource,ResourceGroup,ResourceProvider,Identity,"
    "Level,Location,AlternateSignInName,AppDisplayName,AppId,AuthenticationDetails,AuthenticationMethodsUsed,"
    "AuthenticationProcessingDetails,AuthenticationRequirement,AuthenticationRequirementPolicies,ClientAppUsed,"
    "ConditionalAccessPolicies_dynamic,ConditionalAccessPolicies_string,ConditionalAccessStatus,"
    "CreatedDateTime [UTC],DeviceDetail_dynamic,DeviceDetail_string,IsInteractive,Id,IPAddress,IsRisky,"
    "LocationDetails_dynamic,LocationDetails_string,MfaDetail_dynamic,MfaDetail_string,NetworkLocationDetails,"
    "OriginalRequestId,ProcessingTimeInMilliseconds,RiskDetail,RiskEventTypes,RiskEventTypes_V2,"
    "RiskLevelAggregated,RiskLevelDuringSignIn,RiskState,ResourceDisplayName,ResourceIdentity,ServicePrincipalId,"
    "ServicePrincipalName,Status_dynamic,Status_string,TokenIssuerName,TokenIssuerType,UserAgent,UserDisplayName,"
    "UserId,UserPrincipalName,AADTenantId,UserType,FlaggedForReview,SignInIdentifier,SignInIdentifierType,"
    "ResourceTenantId,HomeTenantId,Type,AdditionalDetails,InitiatedBy,UniqueTokenIdentifier,SessionId"
).split(",")
# A column's table name -> the sign-in property it holds, where they differ.
LA_PROPERTY = {"LocationDetails": "location", "ConditionalAccessPolicies": "appliedConditionalAccessPolicies",
               "Status": "status", "RiskEventTypes_V2": "riskEventTypes_v2"}
LA_TABLE = {"SignInLogs": "SigninLogs", "NonInteractiveUserSignInLogs": "AADNonInteractiveUserSignInLogs",
            "ServicePrincipalSignInLogs": "AADServicePrincipalSignInLogs", "interactive": "SigninLogs",
            "noninteractive": "AADNonInteractiveUserSignInLogs", "serviceprincipal": "AADServicePrincipalSignInLogs"}


def la_time(t):
    """An ISO time as the portal's CSV writes it: 4/28/2021, 2:08:45.221 PM."""
    d, _, rest = t.partition("T")
    y, mo, da = d.split("-")
    hms = rest[:8]
    h, mi, se = hms.split(":")
    frac = (rest[9:12] if len(rest) > 8 and rest[8] == "." else "").ljust(3, "0")
    h = int(h)
    return f"{int(mo)}/{int(da)}/{y}, {h % 12 or 12}:{mi}:{se}.{frac} {'AM' if h < 12 else 'PM'}"


# String columns whose JSON the portal writes pretty-printed across CRLF
# lines inside the quoted cell, as the real export does (the dynamic
# columns hold compact JSON).
LA_PRETTY = {"AuthenticationDetails", "AuthenticationProcessingDetails"}


def la_text(v, pretty=False):
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        if pretty and v:
            return json.dumps(v, indent=2).replace("\n", "\r\n")
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        # A boolean column, as the portal writes it (JSON inside cells
        # keeps true/false).
        return "TRUE" if v else "FALSE"
    return str(v)


def la_workspace(tenant_id):
    """The Log Analytics workspace a tenant's sign-ins go to (TenantId in
    an export is the workspace's id; AADTenantId is the tenant's)."""
    return "%08x-%s" % (zlib.crc32(tenant_id.encode()), tenant_id[9:])


def la_row(name, line):
    """A sign-in JSON line (an Azure Monitor record or a Graph signIn) as a
    Log Analytics row: (file name, table, cells)."""
    r = json.loads(line)
    if "properties" in r:  # PT1H-<category>-<tenant>-<day>.json
        _, cat, tenant, day = name[:-5].split("-")
        p, top = r["properties"], r
        table = LA_TABLE[cat]
    else:  # signins-graph-<tenant>-<kind>-<day>.jsonl
        _, _, tenant, kind, day = name[:-6].split("-")
        p, table = r, LA_TABLE[kind]
        err = r["status"]["errorCode"]
        top = {"time": r["createdDateTime"], "tenantId": r["homeTenantId"] or r["appOwnerTenantId"],
               "category": {"SigninLogs": "SignInLogs", "AADNonInteractiveUserSignInLogs": "NonInteractiveUserSignInLogs",
                            "AADServicePrincipalSignInLogs": "ServicePrincipalSignInLogs"}[table],
               "operationName": "Sign-in activity", "operationVersion": "1.0", "resultType": str(err),
               "resultSignature": "None", "resultDescription": r["status"]["failureReason"] if err else "",
               "durationMs": 0, "correlationId": r["correlationId"],
               "identity": r["userDisplayName"] or r["servicePrincipalName"], "Level": 4,
               "location": r["location"]["countryOrRegion"]}
    props = {k.lower(): v for k, v in p.items()}
    tops = {k.lower(): v for k, v in top.items() if k != "properties"}
    split = table == "SigninLogs"
    cells = []
    for c in LA_COLUMNS:
        base = c.removesuffix(" [UTC]")
        if base.endswith("_string"):
            cells.append("")
            continue
        base = base.removesuffix("_dynamic")
        if base == "TimeGenerated":
            v = top["time"]
        elif base in ("Type",):
            v = table
        elif base in ("SourceSystem",):
            v = "Azure AD"
        elif base in ("Resource", "ResourceGroup", "ResourceProvider"):
            v = "Microsoft.aadiam"
        elif base == "TenantId":
            v = la_workspace(tops.get("tenantid") or "")
        elif base == "AADTenantId":
            v = tops.get("tenantid")
        elif base == "ResourceId":
            v = f"/tenants/{tops.get('tenantid')}/providers/Microsoft.aadiam"
        elif base == "ResourceIdentity":
            v = props.get("resourceid")
        elif base == "Location":
            v = tops.get("location")
        else:
            k = LA_PROPERTY.get(base, base).lower()
            v = props.get(k, tops.get(k))
        if c.endswith(" [UTC]") and isinstance(v, str) and v:
            v = la_time(v)
        cells.append(la_text(v, pretty=base in LA_PRETTY))
    if not split:
        # Only SigninLogs holds these as dynamic columns.
        header = [c.removesuffix("_dynamic") for c in LA_COLUMNS if not c.endswith("_string")]
        cells = [x for c, x in zip(LA_COLUMNS, cells) if not c.endswith("_string")]
    else:
        header = LA_COLUMNS
    return f"{table}-{tenant}-{day}.csv", header, cells


class Sink:
    def __init__(self, out_dir, gz=False, period=1, envelope=False, la_csv=False):
        self.dir = out_dir
        self.gz = gz
        self.la_csv = la_csv  # each record a Log Analytics portal CSV row
        self.envelope = envelope  # each file one envelope of its records
        self.period = period  # days per file
        self.open = {}
        self.bytes = 0
        self.files = 0
        self.records = 0

    def dayc(self, sec):
        """The date string that names the file a record at sec goes to."""
        return DAYC[(sec - BASE) // 86400 // self.period * self.period]

    def write(self, name, text):
        # Progress (and so every record's time) follows the record bytes
        # alone, so the envelope shape holds the sign-in shape's records.
        counted = len(text)
        header = None
        if self.la_csv:
            name, header, cells = la_row(name, text)
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\r\n").writerow(cells)
            text = buf.getvalue()
        if self.envelope:
            name = name[:-1] if name.endswith(".jsonl") else name
            rec = text.rstrip("\n")
            if name in self.open:
                text = ("," if name.startswith("PT1H-") else ",\n") + rec
            elif name.startswith("PT1H-"):
                text = '{"records":[' + rec
            else:
                text = '{\n"@odata.context": "' + GRAPH_CONTEXT + '",\n"value": [\n' + rec
        f = self.open.get(name)
        if f is None:
            path = os.path.join(self.dir, name + (".gz" if self.gz else ""))
            if self.gz and os.path.exists(path):
                raise RuntimeError(f"{path} reopened: would make a multi-member gzip file")
            if self.gz and GZIP_BIN:
                # Compress in a `gzip -6 -n` child: the second core does it, and
                # `-n` keeps the output deterministic (no name, no time).
                raw = open(path, "wb")
                proc = subprocess.Popen([GZIP_BIN, "-6", "-n"], stdin=subprocess.PIPE, stdout=raw, bufsize=1 << 20)
                f = proc.stdin
                f._raw, f._proc = raw, proc
            elif self.gz:
                raw = open(path, "wb", buffering=1 << 20)
                f = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0)
                f._raw, f._proc = raw, None
            else:
                f = open(path, "a", encoding="utf-8", newline="", buffering=1 << 20)
            if header is not None and f.tell() == 0:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\r\n").writerow(header)
                f.write("\ufeff" + buf.getvalue())
            self.open[name] = f
            self.files += 1
        f.write(text.encode() if self.gz else text)
        self.bytes += counted  # ASCII only: characters == bytes
        self.records += 1

    def close_before(self, day):
        """Close the files of days before day - 1 (records are at most minutes
        out of order, so those files are complete). Names end -YYYYMMDD.ext."""
        if day < 2:
            return
        limit = DAYC[(day - 1) // self.period * self.period]
        for name in [n for n in self.open if n.rsplit("-", 1)[1][:8] < limit]:
            self.close_one(name)

    def close_one(self, name):
        f = self.open.pop(name)
        if self.envelope:
            end = "]}\n" if name.startswith("PT1H-") else "\n]\n}\n"
            f.write(end)
        f.close()
        if self.gz:
            if f._proc is not None and f._proc.wait() != 0:
                raise RuntimeError(f"gzip failed on {name}")
            f._raw.close()

    def close(self):
        for name in list(self.open):
            self.close_one(name)


# --------------------------------------------------------------------------
# Sign-ins


def ca_policies(t, ok):
    out = []
    for pid, name in t["ca"]:
        res = "success" if (ok and name.startswith("Require MFA") and _rb(1)) else pick(CA_RESULTS)
        if not ok and name.startswith("Block") and _rb(1):
            res = "failure"
        grant = ["Mfa"] if "MFA" in name else (["Block"] if name.startswith("Block") else
                                              (["RequireCompliantDevice"] if "compliant" in name else []))
        out.append({"id": pid, "displayName": name, "enforcedGrantControls": grant if res in ("success", "failure") else [],
                    "enforcedSessionControls": ["SignInFrequency"] if "frequency" in name and res == "success" else [],
                    "result": res})
    return out


class SigninGen:
    def __init__(self, world, sink):
        self.w = world
        self.sink = sink
        self.tenant_table = weighted_table(world.tenants, [t["weight"] for t in world.tenants])
        self.counts = {"interactive": 0, "noninteractive": 0, "serviceprincipal": 0}
        self.azmon_bytes = 0
        self.graph_bytes = 0

    def user_signin(self, u, sec, interactive, session, token, flow=None, err=None, ip=None, ua_kind=None):
        t = u["t"]
        self.day = sec
        if flow is None:
            flow = wpick(FLOW_ADMIN if (u["admin"] and _rb(3) == 0) else (FLOW_I if interactive else FLOW_NI))
        ck, rk = flow[0], flow[1]
        app_id, app_name = APP[ck]
        res_id, res_name = RES[rk]
        dev = u["devices"][_rb(4) % len(u["devices"])]
        if err is None:
            err = wpick(ERR_I if interactive else ERR_NI)
        if ip is None:
            r = _rb(5)
            ip = u["home_ip"] if r < 18 else (pick(t["office_ips"]) if r < 27 else (u["mobile_ip"] if r < 30 else pick(self.w.roam_ips)))
        browser = ck in ("officehome", "owa", "teamsweb", "mysignins", "portal", "graphexplorer")
        if ua_kind is not None:
            ua = ua_kind
        elif browser:
            ua = dev["ua"]
        elif ck in ("office", "outlookmobile"):
            ua = dev["app_ua"]
        elif ck == "teams":
            ua = UA_TEAMS if dev["os"] == "Windows10" else dev["ua"]
        elif ck == "onedrive":
            ua = UA_ONEDRIVE.format(m=_rb(3) % 4 + 1, d=_rb(3) + 100, p=_rb(3) + 1)
        elif ck in ("azcli", "azps", "exops"):
            ua = pick(UA_RARE[:2])
        else:
            ua = UA_MSAL
        if _rb(14) == 0:
            ua = pick(UA_RARE)
        city = u["city"] if _rb(4) else pick(CITIES)
        ok = err == 0
        mfa = interactive and ok and (u["admin"] or _rb(2) == 0)
        cid = guid()
        frac = frac7()
        created = iso(sec)
        auth = []
        if interactive:
            auth.append({"authenticationStepDateTime": created + "Z", "authenticationMethod": "Password",
                         "authenticationMethodDetail": "Password in the cloud", "succeeded": err not in (50126, 50053, 50055),
                         "authenticationStepResultDetail": "Correct password" if err not in (50126, 50053) else "Invalid username or password or Invalid on-premise username or password.",
                         "authenticationStepRequirement": "Primary authentication", "StatusSequence": 0, "RequestSequence": 0})
            if mfa or err in (50074, 500121):
                auth.append({"authenticationStepDateTime": created + "Z", "authenticationMethod": "Mobile app notification",
                             "authenticationMethodDetail": None, "succeeded": ok,
                             "authenticationStepResultDetail": "MFA successfully completed" if ok else "MFA denied; user declined the authentication",
                             "authenticationStepRequirement": "Multifactor authentication", "StatusSequence": 0, "RequestSequence": 1})
        else:
            auth.append({"authenticationStepDateTime": created + "Z", "authenticationMethod": "Previously satisfied",
                         "authenticationMethodDetail": None, "succeeded": True,
                         "authenticationStepResultDetail": "First factor requirement satisfied by claim in the token",
                         "authenticationStepRequirement": "Primary authentication", "StatusSequence": 0, "RequestSequence": 0})
        kind = "interactive" if interactive else "noninteractive"
        self.counts[kind] += 1
        ca = ca_policies(t, ok)
        cas = "failure" if err == 53003 else ("success" if any(p["result"] == "success" for p in ca) else "notApplied")
        scopes = '[\\"offline_access\\",\\"openid\\",\\"profile\\",\\"User.Read\\"]'
        details = [{"key": "Legacy TLS (TLS 1.0, 1.1, 3DES)", "value": "False"},
                   {"key": "Oauth Scope Info", "value": scopes.replace('\\"', '"')},
                   {"key": "Is CAE Token", "value": "True" if _rb(1) else "False"}]
        device = {"deviceId": dev["deviceId"], "displayName": dev["displayName"], "operatingSystem": dev["os"],
                  "browser": dev["browser"] if browser else dev["rich"], "isCompliant": dev["isCompliant"],
                  "isManaged": dev["isManaged"], "trustType": dev["trustType"]}
        location = {"city": city[0], "state": city[1], "countryOrRegion": city[2],
                    "geoCoordinates": {"altitude": None, "latitude": city[3], "longitude": city[4]}}
        status = {"errorCode": err, "failureReason": ERR[err],
                  "additionalDetails": ("MFA requirement satisfied by claim in the token" if (ok and not interactive and _rb(1)) else
                                        (None if ok else "The user didn't complete the MFA prompt. They may have decided not to authenticate, timed out while doing other work, or has an issue with their authentication setup." if err == 50074 else None))}
        risk = "none" if _rb(9) else pick(["low", "none", "hidden"])
        incoming = "none" if interactive else ("primaryRefreshToken" if dev["kind"].startswith("win_") and dev["isManaged"] and _rb(1) else "refreshToken")
        client_app = "Browser" if browser else "Mobile Apps and Desktop clients"
        if _rb(12) == 0:
            client_app = pick(["Exchange ActiveSync", "Authenticated SMTP", "IMAP4", "Other clients", "Exchange Web Services"])
        evt = ["interactiveUser"] if interactive else ["nonInteractiveUser"]
        common = (u, t, cid, created, frac, app_id, app_name, res_id, res_name, ip, client_app, ua, cas, interactive,
                  risk, auth, ca, details, device, location, status, session, token, incoming, mfa, evt, err)
        if t["channel"] == "graph":
            self._graph(common, kind)
        else:
            self._azmon(common, kind)

    def sp_signin(self, sec, tenant=None):
        t = tenant or wpick(self.tenant_table)
        sp = pick(t["sps"])
        err = wpick(ERR_SP)
        self.counts["serviceprincipal"] += 1
        created = iso(sec)
        res_id, res_name = RES[sp["res"]]
        city = sp["city"]
        if t["channel"] == "graph":
            rec = {
                "id": guid(), "createdDateTime": created + "Z", "userDisplayName": "", "userPrincipalName": "", "userId": "",
                "appId": sp["appId"], "appDisplayName": sp["name"], "ipAddress": sp["ip"], "ipAddressFromResourceProvider": None,
                "clientAppUsed": "", "userAgent": "", "correlationId": guid(), "conditionalAccessStatus": "notApplied",
                "originalRequestId": "", "isInteractive": False, "tokenIssuerName": "", "tokenIssuerType": "UnknownFutureValue",
                "clientCredentialType": sp["cred"], "processingTimeInMilliseconds": -1, "riskDetail": "none",
                "riskLevelAggregated": "none", "riskLevelDuringSignIn": "none", "riskState": "none", "riskEventTypes_v2": [],
                "resourceDisplayName": res_name, "resourceId": res_id, "resourceTenantId": "", "homeTenantId": "",
                "homeTenantName": "", "authenticationMethodsUsed": [], "authenticationRequirement": "", "signInIdentifier": "",
                "signInIdentifierType": None, "servicePrincipalName": sp["name"], "signInEventTypes": ["servicePrincipal"],
                "servicePrincipalId": sp["spId"], "federatedCredentialId": "", "userType": None, "flaggedForReview": False,
                "isTenantRestricted": False, "autonomousSystemNumber": 8075, "crossTenantAccessType": "none",
                "servicePrincipalCredentialKeyId": sp["keyId"],
                "servicePrincipalCredentialThumbprint": sp["thumb"] if sp["cred"] != "clientSecret" else "",
                "uniqueTokenIdentifier": tok(), "incomingTokenType": "none", "authenticationProtocol": "none",
                "resourceServicePrincipalId": guid(), "signInTokenProtectionStatus": "none", "originalTransferMethod": "none",
                "isThroughGlobalSecureAccess": False, "globalSecureAccessIpAddress": "", "sessionId": "",
                "appOwnerTenantId": t["id"], "resourceOwnerTenantId": "", "mfaDetail": None,
                "authenticationAppDeviceDetails": None,
                "status": {"errorCode": err, "failureReason": ERR[err], "additionalDetails": None},
                "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": "", "browser": "", "isCompliant": None,
                                 "isManaged": None, "trustType": ""},
                "location": {"city": city[0], "state": city[1], "countryOrRegion": city[2],
                             "geoCoordinates": {"altitude": None, "latitude": city[3], "longitude": city[4]}},
                "appliedConditionalAccessPolicies": [], "authenticationContextClassReferences": [],
                "authenticationProcessingDetails": [], "networkLocationDetails": [], "authenticationDetails": [],
                "authenticationRequirementPolicies": [], "sessionLifetimePolicies": [],
                "privateLinkDetails": {"policyId": "", "policyName": "", "resourceId": "", "policyTenantId": ""},
                "appliedEventListeners": [], "authenticationAppPolicyEvaluationDetails": [],
                "managedServiceIdentity": {"msiType": "none", "associatedResourceId": "", "federatedTokenId": "", "federatedTokenIssuer": ""},
                "tokenProtectionStatusDetails": {"signInSessionStatus": "none", "signInSessionStatusCode": None}}
            line = json.dumps(rec, separators=(",", ":")) + "\n"
            self.sink.write(f"signins-graph-{t['name']}-serviceprincipal-{self.sink.dayc(sec)}.jsonl", line)
            self.graph_bytes += len(line)
        else:
            props = {
                "id": guid(), "createdDateTime": created + "." + frac7() + "+00:00", "appId": sp["appId"],
                "appDisplayName": sp["name"], "ipAddress": sp["ip"],
                "status": {"errorCode": err, "failureReason": ERR[err]}, "correlationId": guid(),
                "location": {"city": city[0], "state": city[1], "countryOrRegion": city[2],
                             "geoCoordinates": {"latitude": city[3], "longitude": city[4]}},
                "resourceDisplayName": res_name, "resourceId": res_id, "resourceTenantId": t["id"],
                "homeTenantId": t["id"], "servicePrincipalId": sp["spId"], "servicePrincipalName": sp["name"],
                "servicePrincipalCredentialKeyId": sp["keyId"],
                "servicePrincipalCredentialThumbprint": sp["thumb"] if sp["cred"] != "clientSecret" else "",
                "clientCredentialType": sp["cred"], "uniqueTokenIdentifier": tok(), "appOwnerTenantId": t["id"],
                "autonomousSystemNumber": 8075, "conditionalAccessStatus": "notApplied",
                "appliedConditionalAccessPolicies": [], "authenticationProcessingDetails": [],
                "networkLocationDetails": [], "managedServiceIdentity": {"msiType": "none"}, "isTenantRestricted": False,
                "resourceServicePrincipalId": guid(), "signInTokenProtectionStatus": "none"}
            env = {"time": created + "." + frac7() + "Z",
                   "resourceId": f"/tenants/{t['id']}/providers/Microsoft.aadiam",
                   "operationName": "Sign-in activity", "operationVersion": "1.0", "category": "ServicePrincipalSignInLogs",
                   "tenantId": t["id"], "resultType": str(err), "resultSignature": "None",
                   "resultDescription": ERR[err] if err else "", "durationMs": 0, "callerIpAddress": sp["ip"],
                   "correlationId": props["correlationId"], "identity": sp["name"], "Level": 4,
                   "location": city[2], "properties": props}
            line = json.dumps(env) + "\n"
            self.sink.write(f"PT1H-ServicePrincipalSignInLogs-{t['name']}-{self.sink.dayc(sec)}.json", line)
            self.azmon_bytes += len(line)

    def _graph(self, c, kind):
        (u, t, cid, created, frac, app_id, app_name, res_id, res_name, ip, client_app, ua, cas, interactive,
         risk, auth, ca, details, device, location, status, session, token, incoming, mfa, evt, err) = c
        rec = {
            "id": guid(), "createdDateTime": created + "Z", "userDisplayName": u["name"], "userPrincipalName": u["upn"],
            "userId": u["oid"], "appId": app_id, "appDisplayName": app_name, "ipAddress": ip,
            "ipAddressFromResourceProvider": None, "clientAppUsed": client_app, "userAgent": ua, "correlationId": cid,
            "conditionalAccessStatus": cas, "originalRequestId": guid() if interactive else "", "isInteractive": interactive,
            "tokenIssuerName": "", "tokenIssuerType": "AzureAD", "clientCredentialType": "none",
            "processingTimeInMilliseconds": 40 + _rb(9), "riskDetail": "none", "riskLevelAggregated": risk,
            "riskLevelDuringSignIn": "none", "riskState": "none", "riskEventTypes_v2": [],
            "resourceDisplayName": res_name, "resourceId": res_id, "resourceTenantId": t["id"], "homeTenantId": t["id"],
            "homeTenantName": "", "authenticationMethodsUsed": [], "authenticationRequirement":
                "multiFactorAuthentication" if mfa else "singleFactorAuthentication",
            "signInIdentifier": "", "signInIdentifierType": None, "servicePrincipalName": "", "signInEventTypes": evt,
            "servicePrincipalId": "", "federatedCredentialId": "", "userType": "guest" if u["guest"] else "member",
            "flaggedForReview": False, "isTenantRestricted": False, "autonomousSystemNumber": u["asn"],
            "crossTenantAccessType": "b2bCollaboration" if u["guest"] else "none",
            "servicePrincipalCredentialKeyId": "", "servicePrincipalCredentialThumbprint": "",
            "uniqueTokenIdentifier": token, "incomingTokenType": incoming,
            "authenticationProtocol": "none", "resourceServicePrincipalId": guid(),
            "signInTokenProtectionStatus": "none", "originalTransferMethod": "none", "isThroughGlobalSecureAccess": False,
            "globalSecureAccessIpAddress": "", "sessionId": session, "appOwnerTenantId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
            "resourceOwnerTenantId": "f8cdef31-a31e-4b4a-93e4-5f571e91255a",
            "mfaDetail": {"authMethod": "Mobile app notification", "authDetail": None} if mfa else None,
            "authenticationAppDeviceDetails": None, "status": status, "deviceDetail": device, "location": location,
            "appliedConditionalAccessPolicies": ca, "authenticationContextClassReferences": [],
            "authenticationProcessingDetails": details, "networkLocationDetails": [], "authenticationDetails": auth,
            "authenticationRequirementPolicies": [], "sessionLifetimePolicies": [],
            "privateLinkDetails": {"policyId": "", "policyName": "", "resourceId": "", "policyTenantId": ""},
            "appliedEventListeners": [], "authenticationAppPolicyEvaluationDetails": [],
            "managedServiceIdentity": {"msiType": "none", "associatedResourceId": "", "federatedTokenId": "", "federatedTokenIssuer": ""},
            "tokenProtectionStatusDetails": {"signInSessionStatus": "unbound", "signInSessionStatusCode": 1002}}
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        self.sink.write(f"signins-graph-{t['name']}-{kind}-{self.sink.dayc(self.day)}.jsonl", line)
        self.graph_bytes += len(line)

    def _azmon(self, c, kind):
        (u, t, cid, created, frac, app_id, app_name, res_id, res_name, ip, client_app, ua, cas, interactive,
         risk, auth, ca, details, device, location, status, session, token, incoming, mfa, evt, err) = c
        props = {
            "id": guid(), "createdDateTime": created + "." + frac + "+00:00", "userDisplayName": u["name"],
            "userPrincipalName": u["upn"], "userId": u["oid"], "appId": app_id, "appDisplayName": app_name,
            "ipAddress": ip, "status": status, "clientAppUsed": client_app, "userAgent": ua, "deviceDetail": device,
            "location": location, "correlationId": cid, "conditionalAccessStatus": cas,
            "appliedConditionalAccessPolicies": ca, "authenticationContextClassReferences": [],
            "originalRequestId": guid() if interactive else "", "isInteractive": interactive, "tokenIssuerName": "",
            "tokenIssuerType": "AzureAD", "authenticationProcessingDetails": details, "networkLocationDetails": [],
            "clientCredentialType": "none", "processingTimeInMilliseconds": 40 + _rb(9), "riskDetail": "none",
            "riskLevelAggregated": risk, "riskLevelDuringSignIn": "none", "riskState": "none", "riskEventTypes": [],
            "riskEventTypes_v2": [], "resourceDisplayName": res_name, "resourceId": res_id, "resourceTenantId": t["id"],
            "homeTenantId": t["id"], "tenantId": t["id"], "authenticationDetails": auth,
            "authenticationRequirementPolicies": [], "sessionLifetimePolicies": [],
            "authenticationRequirement": "multiFactorAuthentication" if mfa else "singleFactorAuthentication",
            "servicePrincipalId": "", "userType": "Guest" if u["guest"] else "Member", "flaggedForReview": False,
            "isTenantRestricted": False, "autonomousSystemNumber": u["asn"],
            "crossTenantAccessType": "b2bCollaboration" if u["guest"] else "none",
            "privateLinkDetails": {}, "ssoExtensionVersion": "", "uniqueTokenIdentifier": token,
            "authenticationStrengths": [], "incomingTokenType": incoming, "authenticationProtocol": "none",
            "appServicePrincipalId": None, "resourceServicePrincipalId": guid(), "rngcStatus": 0,
            "signInTokenProtectionStatus": "none",
            "tokenProtectionStatusDetails": {"signInSessionStatus": "unbound", "signInSessionStatusCode": 1002},
            "originalTransferMethod": "none", "isThroughGlobalSecureAccess": False, "conditionalAccessAudiences": [res_id],
            "sessionId": session}
        cat = "SignInLogs" if interactive else "NonInteractiveUserSignInLogs"
        err = status["errorCode"]
        env = {"time": created + "." + frac + "Z", "resourceId": f"/tenants/{t['id']}/providers/Microsoft.aadiam",
               "operationName": "Sign-in activity", "operationVersion": "1.0", "category": cat, "tenantId": t["id"],
               "resultType": str(err), "resultSignature": "None", "resultDescription": ERR[err] if err else "",
               "durationMs": 0, "callerIpAddress": ip, "correlationId": cid, "identity": u["name"], "Level": 4,
               "location": location["countryOrRegion"], "properties": props}
        line = json.dumps(env) + "\n"
        self.sink.write(f"PT1H-{cat}-{t['name']}-{self.sink.dayc(self.day)}.json", line)
        self.azmon_bytes += len(line)


# --------------------------------------------------------------------------
# UAL


def w_ops(pairs):
    return weighted_table([p[0] for p in pairs], [p[1] for p in pairs])


SP_OPS = w_ops([("FileAccessed", 430), ("FilePreviewed", 110), ("PageViewed", 150), ("FileModified", 100),
                ("FileDownloaded", 50), ("FileUploaded", 40), ("FileSyncDownloadedFull", 20), ("FileSyncUploadedFull", 10),
                ("SearchQueryPerformed", 20), ("FileDeleted", 15), ("FileRecycled", 10), ("SharingSet", 8),
                ("AnonymousLinkCreated", 3), ("SharingInvitationCreated", 5), ("CompanyLinkCreated", 5),
                ("ListItemUpdated", 4), ("FolderCreated", 5), ("FileCopied", 4)])
EXO_OPS = w_ops([("MailItemsAccessed", 280), ("Send", 150), ("MoveToDeletedItems", 120), ("SoftDelete", 60),
                 ("HardDelete", 20), ("Update", 120), ("Create", 50), ("MailboxLogin", 40), ("SendAs", 5),
                 ("Move", 60)])
TEAMS_OPS = w_ops([("MessageSent", 500), ("ChatCreated", 60), ("ReactedToMessage", 150), ("MessageEditedHasLink", 30),
                   ("MessageCreatedHasLink", 60), ("MemberAdded", 15), ("TeamsSessionStarted", 0.001)])
AAD_DIR_OPS = ["Update user.", "Add member to group.", "Consent to application.", "Remove member from group.",
               "Add app role assignment grant to user.", "Update device.", "Reset user password.",
               "Add service principal.", "Update application.", "Add user.", "Change user password.",
               "Add delegated permission grant.", "Update StsRefreshTokenValidFrom Timestamp."]
EXO_ADMIN_OPS = w_ops([("Set-Mailbox", 30), ("New-InboxRule", 12), ("Set-InboxRule", 6), ("Add-MailboxPermission", 8),
                       ("Remove-MailboxPermission", 3), ("Set-CASMailbox", 6), ("Set-MailboxJunkEmailConfiguration", 20),
                       ("Add-RecipientPermission", 3), ("Set-AdminAuditLogConfig", 0.4), ("Set-MailboxRegionalConfiguration", 8),
                       ("Set-OwaMailboxPolicy", 1), ("Set-TransportRule", 1)])
FOLDERS = ["\\Inbox", "\\Sent Items", "\\Archive", "\\Inbox\\Projects", "\\Inbox\\Newsletters", "\\Drafts",
           "\\Deleted Items", "\\Conversation History", "\\Inbox\\Customers", "\\Notes"]
DOC_WORDS = ["Budget", "Q1", "Q2", "Q3", "Report", "Plan", "Roadmap", "Minutes", "Contract", "Invoice", "Design",
             "Spec", "Review", "Forecast", "Summary", "Onboarding", "Policy", "Proposal", "Draft", "Final",
             "Sales", "Pipeline", "Hiring", "Audit", "Inventory", "Slides", "Notes", "Timesheet", "Checklist"]
EXTS = ["docx", "xlsx", "pptx", "pdf", "docx", "xlsx", "one", "txt", "png", "jpg", "csv", "mp4", "vsdx", "msg"]
SUBJECTS = ["Re: Weekly sync", "Quarterly numbers", "FW: Invoice", "Meeting notes", "Action items", "Re: Contract draft",
            "Travel itinerary", "Your order has shipped", "Team lunch", "Re: Re: Proposal", "Out of office",
            "Security alert digest", "Welcome aboard", "Status update", "Re: Customer escalation"]
MSG_DOMAINS = ["prod.outlook.com", "namprd11.prod.outlook.com", "eurprd04.prod.outlook.com", "mail.gmail.com",
               "apcprd06.prod.outlook.com", "email.amazonses.com", "mail.example.net"]
SYSTEM_USERS = ["NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)", "app@sharepoint", "SHAREPOINT\\system",
                "Microsoft.Exchange.Transport"]


class UalGen:
    """Simulates users' work: bursts of records per user, with the session and
    token of the sign-in that issued them. `on_issue` (if set) is told of every
    token issuance, so a sign-in stream can write the matching sign-in."""

    def __init__(self, world, emit, on_issue=None):
        self.w = world
        self.emit = emit  # emit(tenant, content_type, sec, record_dict)
        self.on_issue = on_issue
        self.state = {}  # user index -> [session, session_start, token, issued, client key, ip]
        self.ops = {}

    def credentials(self, u, sec, ck):
        st = self.state.get(u["i"])
        if st is None or sec - st[1] > 10 * 3600:
            st = [guid(), sec - 60 - _rb(12), None, 0, ck, None]
            self.state[u["i"]] = st
            new_session = True
        else:
            new_session = False
        if st[2] is None or sec - st[3] > 3000 + _rb(10) or st[4] != ck:
            st[2] = tok()
            st[3] = max(BASE, sec - 5 - _rb(8))
            st[4] = ck
            if self.on_issue:
                self.on_issue(u, st[3], new_session, st[0], st[2], ck)
        return st

    def burst(self, sec):
        w = self.w
        u = wpick(w.user_table, 16)
        r = _rb(10)
        if r < 470:
            return self.sp_burst(u, sec)
        if r < 740:
            return self.exo_burst(u, sec)
        if r < 880:
            return self.teams_burst(u, sec)
        if r < 1000:
            return self.aad_burst(u, sec)
        return self.admin_record(u, sec)

    # ---- shared pieces
    def ip_for(self, u):
        r = _rb(5)
        return u["home_ip"] if r < 18 else (pick(u["t"]["office_ips"]) if r < 28 else (u["mobile_ip"] if r < 30 else pick(self.w.roam_ips)))

    def ctx(self, st, sec, client_id=None, corr=False):
        c = {"AADSessionId": st[0]}
        if corr:
            c["CorrelationId"] = guid()
        c["IssuedAtTime"] = iso(st[3])
        c["UniqueTokenId"] = st[2]
        if client_id:
            c["ClientAppId"] = client_id
        return c

    def head(self, sec, op, t, rt, user_key, user_type, workload, ip, obj, user_id, status=None):
        rec = {"CreationTime": iso(sec), "Id": guid(), "Operation": op, "OrganizationId": t["id"], "RecordType": rt}
        if status is not None:
            rec["ResultStatus"] = status
        rec["UserKey"] = user_key
        rec["UserType"] = user_type
        rec["Version"] = 1
        rec["Workload"] = workload
        if ip is not None:
            rec["ClientIP"] = ip
        if obj is not None:
            rec["ObjectId"] = obj
        rec["UserId"] = user_id
        self.ops[op] = self.ops.get(op, 0) + 1
        return rec

    # ---- SharePoint / OneDrive
    def sp_burst(self, u, sec):
        t = u["t"]
        onedrive = _rb(3) < 3
        upn_l = u["upn"].lower()
        if onedrive:
            site_url = "https://%s-my.sharepoint.com/personal/%s/" % (t["name"], upn_l.replace("@", "_").replace(".", "_").replace("#", "_"))
            rel = pick(["Documents", "Documents/Desktop", "Documents/Attachments", "Documents/Projects"])
        else:
            site_url = pick(t["sites"]) + "/"
            rel = pick(["Shared Documents", "Shared Documents/General", "Shared Documents/Archive", "SitePages", "Lists/Tasks"])
        workload = "OneDrive" if onedrive else "SharePoint"
        site_id, web_id, list_id = self._site_ids(site_url)
        dev = u["devices"][_rb(4) % len(u["devices"])]
        sync = _rb(2) == 0 and dev["os"] == "Windows10"
        ck = "onedrive" if sync else ("office" if _rb(1) else "officehome")
        ua = UA_ONEDRIVE.format(m=2, d=108, p=3) if sync else dev["ua"]
        ip = self.ip_for(u)
        st = self.credentials(u, sec, ck)
        use_ctx = _rb(4) < 10
        app_id = APP[ck][0]
        n = 1 + min(int(R.expovariate(1 / 5.0)), 60)
        for _ in range(n):
            op = wpick(SP_OPS)
            fname = "%s %s %s.%s" % (pick(DOC_WORDS), pick(DOC_WORDS), 2020 + _rb(3) % 5, pick(EXTS))
            ext = fname.rsplit(".", 1)[1]
            if op == "PageViewed":
                rt, obj, item_type = 4, site_url + "SitePages/" + pick(["Home.aspx", "News.aspx", "Team.aspx"]), "Page"
            elif op == "SearchQueryPerformed":
                rt, obj, item_type = 4, site_url + "_layouts/15/search.aspx", None
            elif op in ("SharingSet", "AnonymousLinkCreated", "SharingInvitationCreated", "CompanyLinkCreated"):
                rt, obj, item_type = 14, site_url + rel + "/" + fname, "File"
            elif op == "ListItemUpdated":
                rt, obj, item_type = 36, site_url + "Lists/Tasks/%d_.000" % (_rb(10)), "ListItem"
            elif op == "FolderCreated":
                rt, obj, item_type = 6, site_url + rel + "/" + pick(DOC_WORDS), "Folder"
            else:
                rt, obj, item_type = 6, site_url + rel + "/" + fname, "File"
            rec = self.head(sec, op, t, rt, "i:0h.f|membership|%s@live.com" % u["puid"].lower(), 0, workload, ip, obj, upn_l)
            rec["CorrelationId"] = guid()
            rec["EventSource"] = "SharePoint"
            if item_type:
                rec["ItemType"] = item_type
            rec["ListId"] = list_id
            rec["ListItemUniqueId"] = guid()
            rec["Site"] = site_id
            rec["UserAgent"] = ua
            rec["WebId"] = web_id
            if op in ("FileAccessed", "FilePreviewed", "FileDownloaded"):
                rec["HighPriorityMediaProcessing"] = False
            rec["ApplicationDisplayName"] = APP[ck][1]
            rec["ApplicationId"] = app_id
            rec["BrowserName"] = dev["browser"].split(" ")[0] if not sync else ""
            rec["BrowserVersion"] = dev["browser"].split(" ")[-1] if not sync else ""
            rec["ClientAppId"] = app_id
            rec["DeviceDisplayName"] = dev["displayName"] or ip
            rec["GeoLocation"] = pick(["NAM", "EUR", "NAM", "APC"])
            rec["IsManagedDevice"] = dev["isManaged"]
            rec["Platform"] = {"Windows10": "WinDesktop", "MacOs": "MacDesktop", "Ios": "iOS", "Android": "Android"}[dev["os"]]
            rec["AuthenticationType"] = "OAuth"
            rec["DoNotDistributeEvent"] = True if op == "PageViewed" else None
            if rec["DoNotDistributeEvent"] is None:
                del rec["DoNotDistributeEvent"]
            if item_type in ("File", "Folder"):
                rec["SourceFileExtension"] = ext if item_type == "File" else ""
                rec["SiteUrl"] = site_url
                rec["SourceFileName"] = fname if item_type == "File" else obj.rsplit("/", 1)[1]
                rec["SourceRelativeUrl"] = rel
                if op in ("FileModified", "FileUploaded", "FileSyncUploadedFull"):
                    rec["FileSizeBytes"] = 2000 + _rb(22)
                if op == "FileCopied":
                    rec["DestinationFileName"] = "Copy of " + fname
                    rec["DestinationRelativeUrl"] = rel
                    rec["DestinationFileExtension"] = ext
            if rt == 14:
                rec["TargetUserOrGroupType"] = pick(["Member", "Guest", "SharePointGroup"]) if op != "AnonymousLinkCreated" else "Anonymous"
                rec["TargetUserOrGroupName"] = ("Anonymous" if op == "AnonymousLinkCreated" else
                                                (pick(self.w.users)["upn"].lower() if op != "CompanyLinkCreated" else "SharingLinks.%s.OrganizationView" % guid()))
                rec["EventData"] = "<PermissionsGranted>Read</PermissionsGranted><Type>View</Type>" if op != "SharingSet" else "<Type>Edit</Type><MembersCanShare>Yes</MembersCanShare>"
                rec["UniqueSharingId"] = guid()
            if op == "SearchQueryPerformed":
                rec["SearchQueryText"] = pick(DOC_WORDS) + " " + pick(DOC_WORDS)
                rec["QuerySource"] = "SharePoint Search"
            if use_ctx:
                rec["AppAccessContext"] = self.ctx(st, sec, app_id if _rb(1) else None, corr=True)
            self.emit(t, "Audit.SharePoint", sec, rec)
            sec += 1 + _rb(6)
        return sec

    def _site_ids(self, url):
        h = zlib.crc32(url.encode())
        rr = random.Random(h)
        g = lambda: "%08x-%04x-4%03x-%04x-%012x" % (rr.getrandbits(32), rr.getrandbits(16), rr.getrandbits(12), 0x8000 | rr.getrandbits(14), rr.getrandbits(48))
        return g(), g(), g()

    # ---- Exchange mailbox
    def exo_burst(self, u, sec):
        t = u["t"]
        client = u["mail"][_rb(4) % len(u["mail"])]
        app_id, capp, cinfo, ck = client
        ip = self.ip_for(u)
        st = self.credentials(u, sec, ck)
        ip_field = ip
        r = _rb(5)
        if r == 0:
            ip_field = "[%s]:%d" % (ip, 1024 + _rb(15)) if ":" in ip else "%s:%d" % (ip, 1024 + _rb(15))
        elif r == 1 and ":" not in ip:
            ip_field = "::ffff:" + ip
        n = 1 + min(int(R.expovariate(1 / 3.0)), 30)
        sid = "%s-%s" % (t["sid"], u["rid"])
        server = "%s%04d (15.20.%d.%03d)\r\n" % (t["server"], _rb(12), 7400 + _rb(6), _rb(9) % 1000)
        for _ in range(n):
            op = wpick(EXO_OPS)
            rt = {"MailItemsAccessed": 50, "SoftDelete": 3, "HardDelete": 3, "MoveToDeletedItems": 3, "Move": 3}.get(op, 2)
            rec = self.head(sec, op, t, rt, u["puid"], 0, "Exchange", ip_field, None, u["upn_case"], "Succeeded")
            if op != "MailItemsAccessed" and op != "MailboxLogin":
                rec["ObjectId"] = u["upn_case"].split("@")[0] + "\\" + pick(SUBJECTS)
            rec["AppId"] = app_id
            rec["ClientAppId"] = capp if op == "MailItemsAccessed" or _rb(1) else ""
            rec["ClientIPAddress"] = ip
            rec["ClientInfoString"] = cinfo
            rec["ClientRequestId"] = guid() if _rb(1) else ""
            rec["ExternalAccess"] = False
            rec["InternalLogonType"] = 0
            rec["LogonType"] = 0
            rec["LogonUserSid"] = sid
            rec["MailboxGuid"] = u["mbx"]
            rec["MailboxOwnerSid"] = sid
            rec["MailboxOwnerUPN"] = u["upn_case"]
            if op == "MailItemsAccessed":
                # Sync is logged for desktop Outlook (Windows, Mac) only; a
                # rare Sync by another client is the anomaly hunters look for.
                sync = (_rb(4) < 2) if ("MSExchangeRPC" in cinfo or "Mac" in cinfo) else (_rb(12) == 0)
                rec["OperationProperties"] = [{"Name": "MailAccessType", "Value": "Sync" if sync else "Bind"},
                                              {"Name": "IsThrottled", "Value": "False"}]
                if _rb(1):
                    rec["OperationProperties"].reverse()
            rec["OrganizationName"] = t["org"]
            rec["OriginatingServer"] = server
            if _rb(2):
                rec["SessionId"] = st[0]
            rec["TokenObjectId"] = u["oid"]
            rec["TokenTenantId"] = t["id"]
            if op == "MailItemsAccessed":
                if sync:
                    rec["Folders"] = [{"Id": "LgAAAAB" + hexu(40), "Path": pick(FOLDERS)} for _ in range(1 + _rb(2) % 3)]
                    rec["OperationCount"] = len(rec["Folders"])
                else:
                    folders = []
                    cnt = 0
                    for _ in range(1 + _rb(2) % 3):
                        items = [{"InternetMessageId": "<%s@%s>" % (hexu(24), pick(MSG_DOMAINS)), "SizeInBytes": 2000 + _rb(17)}
                                 for _ in range(1 + _rb(3) % 6)]
                        cnt += len(items)
                        folders.append({"FolderItems": items, "Id": "LgAAAAB" + hexu(40), "Path": pick(FOLDERS)})
                    rec["Folders"] = folders
                    rec["OperationCount"] = cnt
            elif rt == 3:
                rec["CrossMailboxOperation"] = False
                if op != "SoftDelete" and op != "HardDelete":
                    rec["DestFolder"] = {"Id": "LgAAAAB" + hexu(40), "Path": "\\Deleted Items" if op == "MoveToDeletedItems" else pick(FOLDERS)}
                rec["Folder"] = {"Id": "LgAAAAB" + hexu(40), "Path": pick(FOLDERS)}
                rec["AffectedItems"] = [{"Id": "RgAAAAB" + hexu(48), "InternetMessageId": "<%s@%s>" % (hexu(24), pick(MSG_DOMAINS)),
                                         "ParentFolder": {"Id": "LgAAAAB" + hexu(40), "Path": pick(FOLDERS)},
                                         "Subject": pick(SUBJECTS)} for _ in range(1 + _rb(2) % 3)]
            elif op != "MailboxLogin":
                item = {"Id": "RgAAAAB" + hexu(48), "InternetMessageId": "<%s@%s>" % (hexu(24), pick(MSG_DOMAINS)),
                        "ParentFolder": {"Id": "LgAAAAB" + hexu(40), "Path": "\\Sent Items" if op in ("Send", "SendAs") else pick(FOLDERS)},
                        "SizeInBytes": 2000 + _rb(17), "Subject": pick(SUBJECTS)}
                if op == "Update":
                    rec["ModifiedProperties"] = pick([["IsRead"], ["Categories"], ["FlagStatus", "FlagRequest"], ["RecipientCollection"]])
                if op in ("Send", "SendAs") and _rb(2) == 0:
                    item["Attachments"] = "%s.%s (%d b)" % (pick(DOC_WORDS), pick(EXTS), 1000 + _rb(20))
                rec["Item"] = item
            if _rb(4) < 11:
                rec["AppAccessContext"] = self.ctx(st, sec, capp or None)
            self.emit(t, "Audit.Exchange", sec, rec)
            sec += 1 + _rb(5)
        return sec

    # ---- Teams
    def teams_burst(self, u, sec):
        t = u["t"]
        ip = self.ip_for(u)
        st = self.credentials(u, sec, "teams")
        dev = u["devices"][_rb(4) % len(u["devices"])]
        rec = self.head(sec, "TeamsSessionStarted", t, 25, u["oid"], 0, "MicrosoftTeams", ip, None, u["upn"].lower())
        rec["ObjectId"] = "Unknown (Unknown)"
        rec["ExtraProperties"] = [{"Key": "Country", "Value": u["city"][2]},
                                  {"Key": "OsName", "Value": {"Windows10": "Windows", "MacOs": "OSX", "Ios": "iOS", "Android": "Android"}[dev["os"]]},
                                  {"Key": "OsVersion", "Value": pick(["10.0.19045", "10.0.22631", "14.3.1", "17.3.1", "14"])},
                                  {"Key": "ClientType", "Value": "Desktop" if dev["os"] in ("Windows10", "MacOs") else "Mobile"},
                                  {"Key": "ClientVersion", "Value": "24004.1307.2669.7070"}]
        rec["DeviceId"] = dev["deviceId"] or guid()
        self.emit(t, "Audit.General", sec, rec)
        n = min(int(R.expovariate(1 / 6.0)), 80)
        chat = "19:%s@unq.gbl.spaces" % hexu(32).lower()
        for _ in range(n):
            sec += 1 + _rb(7)
            op = wpick(TEAMS_OPS)
            rec = self.head(sec, op, t, 25, u["oid"], 0, "MicrosoftTeams", ip, None, u["upn"].lower())
            rec["ChatThreadId"] = chat
            rec["CommunicationType"] = pick(["OneOnOne", "GroupChat", "Team"])
            rec["ClientIP"] = ip
            rec["MessageId"] = str(1709000000000 + _rb(30))
            if op in ("MessageSent", "MessageCreatedHasLink", "MessageEditedHasLink"):
                rec["MessageSizeInBytes"] = 80 + _rb(11)
            if op in ("MessageCreatedHasLink", "MessageEditedHasLink"):
                rec["MessageURLs"] = ["https://%s.sharepoint.com/:w:/r/sites/x/%s" % (t["name"], hexu(8).lower())]
            if op == "MemberAdded":
                m = pick(self.w.users)
                rec["Members"] = [{"DisplayName": m["name"], "Role": 1, "UPN": m["upn"].lower()}]
                rec["TeamName"] = pick(t["sites"]).rsplit("/", 1)[1]
                rec["TeamGuid"] = "19:%s@thread.tacv2" % hexu(32).lower()
            if op == "ReactedToMessage":
                rec["MessageReactionType"] = pick(["like", "heart", "laugh", "surprised"])
            rec["ParticipantInfo"] = {"HasForeignTenantUsers": False, "HasGuestUsers": _rb(4) == 0,
                                      "HasOtherGuestUsers": False, "HasUnauthenticatedUsers": False,
                                      "ParticipatingDomains": [], "ParticipatingSIPDomains": [], "ParticipatingTenantIds": [t["id"]]}
            rec["ResourceTenantId"] = t["id"]
            if _rb(3) < 2:
                rec["AppAccessContext"] = self.ctx(st, sec, APP["teams"][0])
            self.emit(t, "Audit.General", sec, rec)
        return sec

    # ---- Entra (UAL view)
    def aad_burst(self, u, sec):
        t = u["t"]
        ip = self.ip_for(u)
        dev = u["devices"][_rb(4) % len(u["devices"])]
        fails = 0 if _rb(3) else 1 + _rb(2)
        for k in range(fails + 1):
            failed = k < fails
            op = "UserLoginFailed" if failed else "UserLoggedIn"
            rec = self.head(sec, op, t, 15, u["puid"], 0, "AzureActiveDirectory", ip,
                            pick([RES["exo"][0], RES["spo"][0], RES["graph"][0], RES["shell"][0]]), u["upn"].lower(),
                            "Failed" if failed else "Success")
            rec["AzureActiveDirectoryEventType"] = 1
            ext = [{"Name": "ResultStatusDetail", "Value": "Redirect" if not failed else "Success"},
                   {"Name": "UserAgent", "Value": dev["ua"]},
                   {"Name": "RequestType", "Value": pick(["OAuth2:Authorize", "OAuth2:Token", "Login:login", "Login:reprocess", "SAS:ProcessAuth", "Cmsi:Cmsi", "Kmsi:kmsi"])}]
            if not failed and _rb(1):
                ext.insert(1, {"Name": "KeepMeSignedIn", "Value": "true"})
            rec["ExtendedProperties"] = ext
            rec["ModifiedProperties"] = []
            rec["Actor"] = [{"ID": u["oid"], "Type": 0}, {"ID": u["upn"].lower(), "Type": 5}]
            rec["ActorContextId"] = t["id"]
            rec["ActorIpAddress"] = ip
            rec["InterSystemsId"] = guid()
            rec["IntraSystemId"] = guid()
            rec["SupportTicketId"] = ""
            rec["Target"] = [{"ID": rec["ObjectId"], "Type": 0}]
            rec["TargetContextId"] = t["id"]
            rec["ApplicationId"] = pick([APP["officehome"][0], APP["office"][0], APP["owa"][0], APP["teams"][0]])
            rec["DeviceProperties"] = [{"Name": "OS", "Value": dev["os"]}, {"Name": "BrowserType", "Value": dev["browser"].split(" ")[0]},
                                       {"Name": "IsCompliantAndManaged", "Value": "True" if dev["isCompliant"] else "False"},
                                       {"Name": "SessionId", "Value": guid()}]
            rec["ErrorNumber"] = pick(["50126", "50053", "50074", "50140"]) if failed else "0"
            if failed:
                rec["LogonError"] = {"50126": "InvalidUserNameOrPassword", "50053": "IdsLocked", "50074": "UserStrongAuthClientAuthNRequiredInterrupt",
                                     "50140": "KmsiInterrupt"}[rec["ErrorNumber"]]
            self.emit(t, "Audit.AzureActiveDirectory", sec, rec)
            sec += 2 + _rb(5)
        if _rb(4) == 0:
            a = pick(self.w.admins) if self.w.admins else u
            if a["t"] is t:
                sec = self.aad_dir(a, sec)
        return sec

    def aad_dir(self, a, sec):
        t = a["t"]
        target = pick(self.w.users)
        op = pick(AAD_DIR_OPS)
        rec = self.head(sec, op, t, 8, a["puid"], 0, "AzureActiveDirectory", None, target["upn"].lower(), a["upn"].lower(), "Success")
        rec["AzureActiveDirectoryEventType"] = 1
        rec["ExtendedProperties"] = [{"Name": "additionalDetails", "Value": "{\"UserType\":\"Member\"}"},
                                     {"Name": "extendedAuditEventCategory", "Value": "User" if "user" in op.lower() else "Application"}]
        if op == "Consent to application.":
            mods = [{"Name": "ConsentContext.IsAdminConsent", "NewValue": "True" if _rb(2) == 0 else "False", "OldValue": ""},
                    {"Name": "ConsentContext.IsAppOnly", "NewValue": "False", "OldValue": ""},
                    {"Name": "ConsentContext.OnBehalfOfAll", "NewValue": "False", "OldValue": ""},
                    {"Name": "ConsentAction.Permissions", "NewValue": "[] => [[Id: %s, ClientId: %s, PrincipalId: %s, ResourceId: %s, ConsentType: Principal, Scope:  User.Read Mail.Read offline_access, CreatedDateTime: , LastModifiedDateTime ]]; " % (tok(), guid(), target["oid"], guid()), "OldValue": ""},
                    {"Name": "TargetId.ServicePrincipalNames", "NewValue": guid(), "OldValue": ""}]
            tgt_id = guid()
        elif "group" in op:
            g = pick(t["sites"]).rsplit("/", 1)[1]
            mods = [{"Name": "Group.ObjectID", "NewValue": guid(), "OldValue": ""},
                    {"Name": "Group.DisplayName", "NewValue": g, "OldValue": ""},
                    {"Name": "Group.WellKnownObjectName", "NewValue": "", "OldValue": ""}]
            tgt_id = target["oid"]
        else:
            mods = [{"Name": pick(["AssignedLicense", "StrongAuthenticationMethod", "Department", "JobTitle", "AccountEnabled", "TelephoneNumber"]),
                     "NewValue": "[\"%s\"]" % pick(["Sales", "true", "ENTERPRISEPREMIUM", "Engineer"]), "OldValue": "[]"},
                    {"Name": "Included Updated Properties", "NewValue": "AssignedLicense", "OldValue": ""}]
            tgt_id = target["oid"]
        rec["ModifiedProperties"] = mods
        rec["Actor"] = [{"ID": a["upn"].lower(), "Type": 5}, {"ID": a["puid"], "Type": 3}, {"ID": a["oid"], "Type": 2},
                        {"ID": "User_" + a["oid"], "Type": 2}, {"ID": "User", "Type": 2}]
        rec["ActorContextId"] = t["id"]
        rec["ActorIpAddress"] = self.ip_for(a)
        rec["InterSystemsId"] = guid()
        rec["IntraSystemId"] = guid()
        rec["SupportTicketId"] = ""
        rec["Target"] = [{"ID": "User_" + tgt_id, "Type": 2}, {"ID": tgt_id, "Type": 2}, {"ID": "User", "Type": 2},
                         {"ID": target["upn"].lower(), "Type": 5}, {"ID": target["puid"], "Type": 3}]
        rec["TargetContextId"] = t["id"]
        self.emit(t, "Audit.AzureActiveDirectory", sec, rec)
        return sec + 1

    # ---- Exchange admin cmdlets
    def admin_record(self, u, sec):
        t = u["t"]
        op = wpick(EXO_ADMIN_OPS)
        system = op in ("Set-MailboxJunkEmailConfiguration", "Set-MailboxRegionalConfiguration") or (op == "Set-Mailbox" and _rb(1))
        inbox = op in ("New-InboxRule", "Set-InboxRule")
        actor = u if (inbox or system) else (pick(self.w.admins) if self.w.admins else u)
        if actor["t"] is not t:
            actor = u
        ip = self.ip_for(actor)
        st = self.credentials(actor, sec, "owa" if inbox else "exops")
        if system:
            uid = SYSTEM_USERS[0]
            rec = self.head(sec, op, t, 1, uid, 3, "Exchange", None, None, uid, "True")
            del rec["UserId"]
            rec["ClientIP"] = ""
        else:
            ip_port = ("[%s]:%d" % (ip, 1024 + _rb(15))) if ":" in ip else ("%s:%d" % (ip, 1024 + _rb(15)))
            rec = self.head(sec, op, t, 1, actor["puid"], 2 if actor["admin"] else 0, "Exchange", ip_port, None, actor["upn_case"], "True")
            del rec["UserId"]
        target = u
        ident = "%s\\%s" % (t["org"], target["oid"])
        rec["ObjectId"] = ident
        rec["UserId"] = rec["UserKey"] if system else actor["upn_case"]
        rec["AppId"] = "" if system else (APP["owa"][0] if inbox else APP["exops"][0])
        rec["ClientAppId"] = ""
        rec["ExternalAccess"] = system
        rec["OrganizationName"] = t["org"]
        rec["OriginatingServer"] = "%s%04d (15.20.%d.%03d)\r\n" % (t["server"], _rb(12), 7400 + _rb(6), _rb(9) % 1000)
        if op == "New-InboxRule" or op == "Set-InboxRule":
            params = [{"Name": "AlwaysDeleteOutlookRulesBlob", "Value": "False"}, {"Name": "Force", "Value": "False"},
                      {"Name": "Name", "Value": pick(["Newsletters", "Move receipts", "FYI", "..", "Archive vendor", "RSS"])},
                      dict(zip(("Name", "Value"), pick([("MoveToFolder", "Archive"), ("MoveToFolder", "RSS Feeds"), ("DeleteMessage", "True"),
                                                        ("MarkAsRead", "True"), ("ForwardTo", pick(self.w.users)["upn"])]))),
                      dict(zip(("Name", "Value"), pick([("From", "noreply@example.net"), ("SubjectContainsWords", "invoice;payment"),
                                                        ("BodyContainsWords", "newsletter"), ("SentTo", u["upn"])]))),
                      {"Name": "StopProcessingRules", "Value": "True"}]
        elif op == "Set-AdminAuditLogConfig":
            params = [{"Name": "UnifiedAuditLogIngestionEnabled", "Value": "False" if _rb(2) == 0 else "True"}]
        elif op == "Set-Mailbox":
            params = [{"Name": "Identity", "Value": target["oid"]},
                      pick([{"Name": "RetainDeletedItemsFor", "Value": "30.00:00:00"}, {"Name": "LitigationHoldEnabled", "Value": "True"},
                            {"Name": "ProhibitSendQuota", "Value": "99 GB (106,300,440,576 bytes)"},
                            {"Name": "AuditEnabled", "Value": "True"}, {"Name": "GrantSendOnBehalfTo", "Value": pick(self.w.users)["upn"]},
                            {"Name": "Type", "Value": "Shared"}])]
        elif op in ("Add-MailboxPermission", "Remove-MailboxPermission"):
            params = [{"Name": "Identity", "Value": target["oid"]}, {"Name": "User", "Value": pick(self.w.users)["upn"]},
                      {"Name": "AccessRights", "Value": "FullAccess"}, {"Name": "InheritanceType", "Value": "All"}]
        elif op == "Add-RecipientPermission":
            params = [{"Name": "Identity", "Value": target["upn"]}, {"Name": "Trustee", "Value": pick(self.w.users)["upn"]},
                      {"Name": "AccessRights", "Value": "SendAs"}, {"Name": "Confirm", "Value": "False"}]
        elif op == "Set-CASMailbox":
            params = [{"Name": "Identity", "Value": target["upn"]}, {"Name": pick(["ActiveSyncEnabled", "PopEnabled", "ImapEnabled", "EwsEnabled"]), "Value": "False"}]
        elif op == "Set-MailboxJunkEmailConfiguration":
            params = [{"Name": "Identity", "Value": target["mbx"]}, {"Name": "TrustedSendersAndDomains", "Value": "%s;%s" % (pick(MSG_DOMAINS), pick(MSG_DOMAINS))}]
        elif op == "Set-MailboxRegionalConfiguration":
            params = [{"Name": "Identity", "Value": target["mbx"]}, {"Name": "Language", "Value": pick(["en-US", "de-DE", "fr-FR", "ja-JP"])},
                      {"Name": "TimeZone", "Value": pick(["Pacific Standard Time", "W. Europe Standard Time", "Tokyo Standard Time"])}]
        else:
            params = [{"Name": "Identity", "Value": pick(["OwaMailboxPolicy-Default", "Block external forwarding"])},
                      {"Name": "Enabled", "Value": "True"}]
        rec["Parameters"] = params
        if not system:
            rec["SessionId"] = st[0]
            rec["AppAccessContext"] = self.ctx(st, sec, rec["AppId"] or None)
        self.emit(t, "Audit.Exchange", sec, rec)
        return sec + 1


# --------------------------------------------------------------------------
# Shapes


class Progress:
    def __init__(self, target):
        self.target = target

    def sec(self, done):
        p = min(done / self.target, 0.9999)
        return BASE + int(p * SPAN) + _rb(9)


def paced(sink, target):
    """The time of each next record until the sink holds target bytes, the
    files of days gone closed as the days pass."""
    pr = Progress(target)
    last_day = -1
    while sink.bytes < target:
        sec = pr.sec(sink.bytes)
        day = (sec - BASE) // 86400
        if day != last_day:
            sink.close_before(day)
            last_day = day
        yield sec


def gen_signin(world, target, out, sink):
    sg = SigninGen(world, sink)
    state = {}
    for sec in paced(sink, target):
        r = _rb(10)
        if r < 100:
            sg.sp_signin(sec)
            continue
        u = wpick(world.user_table, 16)
        st = state.get(u["i"])
        if r < 250:
            # interactive sign-in (a new session), sometimes after a failure
            if _rb(2) == 0:
                sg.user_signin(u, sec, True, guid(), tok(), err=pick([50126, 50140, 50074, 50126, 50076]))
                sec += 5 + _rb(5)
            st = [guid(), sec]
            state[u["i"]] = st
            sg.user_signin(u, sec, True, st[0], tok())
            continue
        if st is None or sec - st[1] > 10 * 3600:
            # the session began before this export (or in a log not given)
            st = [guid(), sec - _rb(14)]
            state[u["i"]] = st
        sg.user_signin(u, sec, False, st[0], tok())
    sink.close()
    c = sg.counts
    tot = sum(c.values()) or 1
    return (f"{tot} sign-ins: {c['noninteractive'] * 100 // tot}% non-interactive, {c['interactive'] * 100 // tot}% interactive, "
            f"{c['serviceprincipal'] * 100 // tot}% service principal; Graph {sg.graph_bytes / 1e6:.0f} MB, "
            f"Azure Monitor {sg.azmon_bytes / 1e6:.0f} MB")


def ual_name(sink, t, ct, sec):
    return f"ual-{t['name']}-{ct}-{sink.dayc(sec)}.jsonl"


class PowerShellFiles:
    """UAL records as Windows PowerShell 5.1 saves `Search-UnifiedAuditLog`
    output with `ConvertTo-Json | Out-File`: one UTF-16 LE file per tenant
    and day, a pretty-printed array of AuditRecord objects."""

    def __init__(self, out):
        self.out = out
        self.open = {}  # name -> [file, records so far]

    def write(self, t, day, sec, rec, line):
        name = f"Search-UnifiedAuditLog-{t['name']}-{DAYC[day]}.json"
        f = self.open.get(name)
        if f is None:
            path = os.path.join(self.out, name)
            if os.path.exists(path):
                # Its array is closed: appending would make two documents.
                raise RuntimeError(f"{path} reopened after it was closed")
            raw = open(path, "wb", buffering=1 << 20)
            raw.write(b"\xff\xfe")
            f = self.open[name] = [raw, 0]
        f[1] += 1
        obj = [
            ("RunspaceId", "6f7c5a1e-3b2d-4c8e-9a10-2b3c4d5e6f70"),
            ("RecordType", rec["RecordType"]),
            # ConvertTo-Json writes a DateTime so, escaping its slashes.
            ("CreationDate", "\\/Date(%d)\\/" % (sec * 1000)),
            ("UserIds", rec.get("UserId", "")),
            ("Operations", rec["Operation"]),
            ("AuditData", line),
            ("ResultIndex", f[1]),
            ("ResultCount", 5000),
            ("Identity", rec["Id"]),
            ("IsValid", True),
            ("ObjectState", "Unchanged"),
        ]
        members = ",\r\n".join(
            "        " + json.dumps(k) + ":  " + ('"' + v + '"' if k == "CreationDate" else json.dumps(v)) for k, v in obj)
        text = ("[\r\n" if f[1] == 1 else ",\r\n") + "    {\r\n" + members + "\r\n    }"
        f[0].write(text.encode("utf-16-le"))

    def close_before(self, day):
        """Close the files of days before day - 1 (records are at most
        minutes out of order, so those files are complete)."""
        if day < 2:
            return
        for name in [n for n in self.open if n.rsplit("-", 1)[1][:8] < DAYC[day - 1]]:
            self.close_one(name)

    def close_one(self, name):
        f = self.open.pop(name)
        f[0].write("\r\n]\r\n".encode("utf-16-le"))
        f[0].close()

    def close(self):
        for name in list(self.open):
            self.close_one(name)


def gen_ual(world, target, out, sink, csv_mode=False, powershell=False):
    rows = [0]
    ps = PowerShellFiles(out) if powershell else None
    if powershell:
        def emit(t, ct, sec, rec):
            line = json.dumps(rec, separators=(",", ":"))
            ps.write(t, (sec - BASE) // 86400, sec, rec, line)
            # Progress follows the JSON-lines bytes: the records of `ual`.
            sink.bytes += len(line) + 1
            sink.records += 1
    elif csv_mode:
        writers = {}

        def emit(t, ct, sec, rec):
            line = json.dumps(rec, separators=(",", ":"))
            key = t["name"]
            wr = writers.get(key)
            if wr is None or wr[2] >= 50000:
                if wr is not None:
                    wr[0].close()
                n = (wr[3] + 1) if wr else 1
                f = open(os.path.join(out, f"purview-audit-{key}-{n:03d}.csv"), "w", encoding="utf-8", newline="", buffering=1 << 20)
                w = csv.writer(f)
                w.writerow(["RecordId", "CreationDate", "RecordType", "Operation", "UserId", "AuditData",
                            "AssociatedAdminUnits", "AssociatedAdminUnitsNames"])
                wr = [f, w, 0, n]
                writers[key] = wr
            row = [rec["Id"], iso(sec) + ".0000000Z", rec["RecordType"], rec["Operation"], rec.get("UserId", ""), line, "", ""]
            wr[1].writerow(row)
            wr[2] += 1
            sink.bytes += (len(line) + line.count('"') + 2 + sum(len(str(x)) for x in row[:5])
                           + (2 if "," in row[4] else 0) + 9)
            rows[0] += 1
    else:
        def emit(t, ct, sec, rec):
            sink.write(ual_name(sink, t, ct, sec), json.dumps(rec, separators=(",", ":")) + "\n")
    ug = UalGen(world, emit)
    pr = Progress(target)
    last_day = -1
    while sink.bytes < target:
        sec = pr.sec(sink.bytes)
        day = (sec - BASE) // 86400
        if day != last_day and not csv_mode:
            sink.close_before(day)
            if ps:
                ps.close_before(day)
            last_day = day
        ug.burst(sec)
    sink.close()
    if ps:
        ps.close()
    if csv_mode:
        for wr in writers.values():
            wr[0].close()
    return ug


# --------------------------------------------------------------------------
# Entra directory audits and Azure Activity

# (activityDisplayName, category, loggedByService, operationType, weight,
#  target kind, who starts it: "sync" an app, "admin", "self" the user)
AUDIT_OPS = [
    ("Update user", "UserManagement", "Core Directory", "Update", 300, "user_update", "sync"),
    ("Add member to group", "GroupManagement", "Core Directory", "Assign", 120, "group_member", "admin"),
    ("Remove member from group", "GroupManagement", "Core Directory", "Unassign", 60, "group_member", "admin"),
    ("Update group", "GroupManagement", "Core Directory", "Update", 50, "group", "sync"),
    ("Change user license", "UserManagement", "Core Directory", "Update", 40, "user", "admin"),
    ("Update device", "Device", "Core Directory", "Update", 80, "device", "intune"),
    ("Add registered owner to device", "Device", "Core Directory", "Assign", 20, "device", "self"),
    ("Add device", "Device", "Core Directory", "Add", 20, "device", "self"),
    ("Device no longer compliant", "Device", "Core Directory", "Update", 10, "device", "intune"),
    ("Update StsRefreshTokenValidFrom Timestamp", "UserManagement", "Core Directory", "Update", 30, "user_sts", "sync"),
    ("User registered security info", "UserManagement", "Authentication Methods", "Add", 30, "user", "self"),
    ("User started security info registration", "UserManagement", "Authentication Methods", "Add", 20, "user", "self"),
    ("Reset password (self-service)", "UserManagement", "Self-service Password Management", "Update", 10, "user", "self"),
    ("Change password (self-service)", "UserManagement", "Self-service Password Management", "Update", 10, "user", "self"),
    ("Add user", "UserManagement", "Core Directory", "Add", 10, "user", "admin"),
    ("Delete user", "UserManagement", "Core Directory", "Delete", 5, "user", "admin"),
    ("Hard Delete user", "UserManagement", "Core Directory", "Delete", 3, "user", "admin"),
    ("Add owner to group", "GroupManagement", "Core Directory", "Assign", 5, "group_member", "admin"),
    ("Consent to application", "ApplicationManagement", "Core Directory", "Assign", 3, "consent", "self"),
    ("Add delegated permission grant", "ApplicationManagement", "Core Directory", "Assign", 3, "sp", "self"),
    ("Add app role assignment to service principal", "ApplicationManagement", "Core Directory", "Assign", 2, "sp", "admin"),
    ("Add service principal", "ApplicationManagement", "Core Directory", "Add", 1, "sp", "admin"),
    ("Update application – Certificates and secrets management", "ApplicationManagement", "Core Directory", "Update", 2, "app_cred", "admin"),
    ("Update application", "ApplicationManagement", "Core Directory", "Update", 4, "app", "admin"),
    ("Add member to role", "RoleManagement", "Core Directory", "Assign", 1, "role", "admin"),
    ("Add eligible member (permanent)", "RoleManagement", "PIM", "Add", 0.5, "role", "pim"),
    ("Update conditional access policy", "Policy", "Conditional Access", "Update", 1, "policy", "admin"),
    ("Update policy", "Policy", "Core Directory", "Update", 2, "policy", "admin"),
    ("Read BitLocker key", "KeyManagement", "Core Directory", "Read", 2, "device", "admin"),
    ("Disable Strong Authentication", "UserManagement", "Core Directory", "Update", 0.2, "user", "admin"),
    ("Set federation settings on domain", "DirectoryManagement", "Core Directory", "Set", 0.05, "domain", "admin"),
]
AUDIT_TABLE = weighted_table(AUDIT_OPS, [o[4] for o in AUDIT_OPS], bits=16)
SYSTEM_APPS = {
    "sync": [("Microsoft Substrate Management", "98db8bd6-0cc0-4e67-9de5-f187f1cd1b41"),
             ("Azure AD Cloud Sync", "1a4721b3-e57f-4451-ae87-ef078703ec94"),
             ("Microsoft Online Services", "5a2b5e0c-9f5d-4b91-9d4a-fd4b6a57b8b0")],
    "intune": [("Microsoft Intune", "0000000a-0000-0000-c000-000000000000")],
    "pim": [("MS-PIM", "01fc33a7-78ba-4d2f-a4b7-768e336e890e")],
}
GROUPS = ["Finance", "HR", "Marketing", "Sales", "Engineering", "Legal", "IT Operations", "All Company",
          "Project Phoenix", "Contractors", "VPN Users", "Executives", "Support Tier 2", "Guests"]
ROLES = ["Helpdesk Administrator", "User Administrator", "Global Reader", "Security Reader",
         "Exchange Administrator", "Application Administrator", "Global Administrator"]
USER_PROPS = ["AssignedLicense", "AssignedPlan", "Department", "JobTitle", "Manager", "MobilePhone",
              "OfficeLocation", "ProxyAddresses", "StrongAuthenticationMethod", "TelephoneNumber",
              "UserPrincipalName", "City", "AccountEnabled", "LastDirSyncTime", "Included Updated Properties"]
# (operationName, resource provider path, weight, writes a Start record first)
ACTIVITY_OPS = [
    ("MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE", "MICROSOFT.COMPUTE/VIRTUALMACHINES/vm-%s", 20, True),
    ("MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION", "MICROSOFT.COMPUTE/VIRTUALMACHINES/vm-%s", 15, True),
    ("MICROSOFT.COMPUTE/VIRTUALMACHINES/DEALLOCATE/ACTION", "MICROSOFT.COMPUTE/VIRTUALMACHINES/vm-%s", 15, True),
    ("MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE", "MICROSOFT.RESOURCES/DEPLOYMENTS/deploy-%s", 15, True),
    ("MICROSOFT.STORAGE/STORAGEACCOUNTS/WRITE", "MICROSOFT.STORAGE/STORAGEACCOUNTS/st%s", 8, True),
    ("MICROSOFT.STORAGE/STORAGEACCOUNTS/LISTKEYS/ACTION", "MICROSOFT.STORAGE/STORAGEACCOUNTS/st%s", 10, False),
    ("MICROSOFT.WEB/SITES/WRITE", "MICROSOFT.WEB/SITES/app-%s", 8, True),
    ("MICROSOFT.WEB/SITES/RESTART/ACTION", "MICROSOFT.WEB/SITES/app-%s", 5, False),
    ("MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/SECURITYRULES/WRITE", "MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/nsg-%s/SECURITYRULES/allow-443", 4, True),
    ("MICROSOFT.NETWORK/PUBLICIPADDRESSES/WRITE", "MICROSOFT.NETWORK/PUBLICIPADDRESSES/pip-%s", 3, True),
    ("MICROSOFT.KEYVAULT/VAULTS/WRITE", "MICROSOFT.KEYVAULT/VAULTS/kv-%s", 3, True),
    ("MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE", "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/%s", 2, True),
    ("MICROSOFT.AUTHORIZATION/POLICYASSIGNMENTS/WRITE", "MICROSOFT.AUTHORIZATION/POLICYASSIGNMENTS/%s", 1, True),
    ("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE", "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/diag-%s", 1, False),
    ("MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE", "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/diag-%s", 0.1, False),
    ("MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/WRITE", "MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/aks-%s", 2, True),
    ("MICROSOFT.SQL/SERVERS/FIREWALLRULES/WRITE", "MICROSOFT.SQL/SERVERS/sql-%s/FIREWALLRULES/office", 1, True),
    ("MICROSOFT.RESOURCES/SUBSCRIPTIONS/RESOURCEGROUPS/DELETE", "", 0.5, True),
]
ACTIVITY_TABLE = weighted_table(ACTIVITY_OPS, [o[2] for o in ACTIVITY_OPS], bits=14)
# The operations as resource providers name them (an activity record's
# authorization action and message); operationName is their upper case.
ACTION = {a.upper(): a for a in [
    "Microsoft.Compute/virtualMachines/write", "Microsoft.Compute/virtualMachines/start/action",
    "Microsoft.Compute/virtualMachines/deallocate/action", "Microsoft.Resources/deployments/write",
    "Microsoft.Storage/storageAccounts/write", "Microsoft.Storage/storageAccounts/listKeys/action",
    "Microsoft.Web/sites/write", "Microsoft.Web/sites/restart/action",
    "Microsoft.Network/networkSecurityGroups/securityRules/write", "Microsoft.Network/publicIPAddresses/write",
    "Microsoft.KeyVault/vaults/write", "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/policyAssignments/write", "Microsoft.Insights/diagnosticSettings/write",
    "Microsoft.Insights/diagnosticSettings/delete", "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.Sql/servers/firewallRules/write", "Microsoft.Resources/subscriptions/resourceGroups/delete",
]}
assert set(ACTION) == {o[0] for o in ACTIVITY_OPS}
AZ_ROLES = [("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"), ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
            ("Virtual Machine Contributor", "9980e02c-c2be-4d73-94e8-173b1dc7cf3c")]


class AuditGen:
    def __init__(self, world, sink):
        self.w = world
        self.sink = sink
        self.tenant_table = weighted_table(world.tenants, [t["weight"] for t in world.tenants])
        self.counts = {"directory": 0, "activity": 0}
        W = random.Random(20240302 + seed_offset())
        g = lambda: str(__import__("uuid").UUID(int=W.getrandbits(128), version=4))
        for t in world.tenants:
            t["groups"] = [(g(), n) for n in GROUPS]
            t["subs"] = [g() for _ in range(W.randint(1, 4))]
            t["rgs"] = ["rg-%s-%s" % (W.choice(["prod", "dev", "test", "shared"]), W.choice(["web", "data", "ops", "ml", "net"]))
                        for _ in range(W.randint(4, 12))]
            t["mg"] = g()

    def _ip(self, u):
        r = _rb(5)
        return u["home_ip"] if r < 18 else (pick(u["t"]["office_ips"]) if r < 28 else pick(self.w.roam_ips))

    def directory(self, sec):
        name, cat, svc, optype, _, target, who = wpick(AUDIT_TABLE, 16)
        u = wpick(self.w.user_table, 16)
        t = u["t"]
        if who == "admin":
            actor = pick([a for a in self.w.admins if a["t"] is t] or self.w.admins)
        else:
            actor = u
        cid = guid()
        created = iso(sec) + "." + frac7()
        if who in SYSTEM_APPS:
            app_name, app_id = pick(SYSTEM_APPS[who])
            initiated = {"app": {"appId": app_id, "displayName": app_name, "servicePrincipalId": guid(),
                                 "servicePrincipalName": None}, "user": None}
            ip = None
        else:
            ip = self._ip(actor)
            initiated = {"app": None, "user": {"id": actor["oid"], "displayName": None,
                                               "userPrincipalName": actor["upn"], "ipAddress": ip,
                                               "userType": None, "homeTenantId": None, "homeTenantName": None,
                                               "roles": []}}
        mp = lambda n, old, new: {"displayName": n, "oldValue": old, "newValue": new}
        targets = []
        if target in ("user", "user_update", "user_sts"):
            props = []
            if target == "user_update":
                for p in R.sample(USER_PROPS, 1 + _rb(2)):
                    props.append(mp(p, '["%s"]' % hexu(6), '["%s"]' % hexu(6)))
            elif target == "user_sts":
                props.append(mp("StsRefreshTokensValidFrom", '["%sZ"]' % iso(max(BASE, sec - 86400 * (1 + _rb(6)))), '["%sZ"]' % iso(sec)))
            targets.append({"id": u["oid"], "displayName": None, "type": "User", "userPrincipalName": u["upn"],
                            "groupType": None, "modifiedProperties": props, "administrativeUnits": []})
        elif target in ("group_member", "group"):
            gid, gname = pick(t["groups"])
            if target == "group_member":
                targets.append({"id": u["oid"], "displayName": None, "type": "User", "userPrincipalName": u["upn"],
                                "groupType": None, "modifiedProperties": [], "administrativeUnits": []})
            targets.append({"id": gid, "displayName": None, "type": "Group", "userPrincipalName": None,
                            "groupType": "unifiedGroups", "modifiedProperties": [
                                mp("Group.ObjectID", None, '"%s"' % gid), mp("Group.DisplayName", None, '"%s"' % gname)],
                            "administrativeUnits": []})
        elif target == "device":
            dev = pick(u["devices"])
            targets.append({"id": dev["deviceId"] or guid(), "displayName": dev["displayName"] or "iPhone", "type": "Device",
                            "userPrincipalName": None, "groupType": None, "modifiedProperties": [
                                mp("IsCompliant", '[%s]' % ("true" if dev["isCompliant"] else "false"),
                                   '[%s]' % ("false" if name == "Device no longer compliant" else ("true" if dev["isCompliant"] else "false"))),
                                mp("Included Updated Properties", None, '"IsCompliant"')],
                            "administrativeUnits": []})
        elif target in ("sp", "consent", "app", "app_cred"):
            sp = pick(t["sps"])
            props = []
            if target == "consent":
                props = [mp("ConsentContext.IsAdminConsent", None, '"%s"' % ("True" if who == "admin" else "False")),
                         mp("ConsentAction.Permissions", None, '"[] => [[Id: %s, ClientId: %s, PrincipalId: %s, ResourceId: %s, ConsentType: Principal, Scope:  User.Read Mail.Read offline_access]]; "'
                            % (tok(), sp["spId"], u["oid"], guid()))]
            elif target == "app_cred":
                props = [mp("KeyDescription", "[]", '["[KeyIdentifier=%s,KeyType=Password,KeyUsage=Verify,DisplayName=%s]"]' % (guid(), "secret")),
                         mp("Included Updated Properties", None, '"KeyDescription"')]
            elif target == "app":
                props = [mp("AppAddress", "[]", '[{"AddressType":0,"Address":"https://%s.example/signin","ReplyAddressClientType":1}]' % t["name"])]
            targets.append({"id": sp["spId"], "displayName": sp["name"], "type": "ServicePrincipal" if target != "app" and target != "app_cred" else "Application",
                            "userPrincipalName": None, "groupType": None, "modifiedProperties": props,
                            "administrativeUnits": []})
        elif target == "role":
            targets.append({"id": u["oid"], "displayName": None, "type": "User", "userPrincipalName": u["upn"],
                            "groupType": None, "modifiedProperties": [
                                mp("Role.DisplayName", None, '"%s"' % pick(ROLES)), mp("Role.WellKnownObjectName", None, '"%s"' % "TenantAdmins")],
                            "administrativeUnits": []})
        elif target == "policy":
            targets.append({"id": guid(), "displayName": pick(CA_POLICY_NAMES), "type": "Policy", "userPrincipalName": None,
                            "groupType": None, "modifiedProperties": [mp("ConditionalAccessPolicy", '{"state":"enabled"}', '{"state":"enabledForReportingButNotEnforced"}')],
                            "administrativeUnits": []})
        else:
            targets.append({"id": guid(), "displayName": t["domain"], "type": "Other", "userPrincipalName": None,
                            "groupType": None, "modifiedProperties": [mp("IssuerUri", '"urn:%s"' % t["domain"], '"http://any.sts/%s"' % hexu(8))],
                            "administrativeUnits": []})
        ok = _rb(7) != 0
        details = []
        if who not in SYSTEM_APPS:
            details.append({"key": "User-Agent", "value": pick(u["devices"])["ua"]})
        if target == "group_member":
            details.append({"key": "GroupType", "value": "Unified"})
        props = {"id": "Directory_%s_%s_%d" % (cid, hexu(5), _rb(27)), "category": cat, "correlationId": cid,
                 "result": "success" if ok else "failure", "resultReason": "" if ok else "Microsoft.Online.Workflows.ObjectNotFoundException",
                 "activityDisplayName": name, "activityDateTime": None, "loggedByService": svc, "operationType": optype,
                 "userAgent": None, "initiatedBy": initiated, "targetResources": targets, "additionalDetails": details}
        self.counts["directory"] += 1
        if t["channel"] == "graph":
            props["activityDateTime"] = created + "Z"
            line = json.dumps(props, separators=(",", ":")) + "\n"
            self.sink.write(f"directoryAudits-{t['name']}-{self.sink.dayc(sec)}.jsonl", line)
        else:
            props["activityDateTime"] = created + "+00:00"
            env = {"time": created + "Z", "resourceId": f"/tenants/{t['id']}/providers/Microsoft.aadiam",
                   "operationName": name, "operationVersion": "1.0", "category": "AuditLogs", "tenantId": t["id"],
                   "resultSignature": "None", "durationMs": 0, "callerIpAddress": ip or "", "correlationId": cid,
                   "Level": 4, "properties": props}
            self.sink.write(f"PT1H-AuditLogs-{t['name']}-{self.sink.dayc(sec)}.json", json.dumps(env) + "\n")

    def activity(self, sec):
        t = wpick(self.tenant_table)
        op, path, _, starts = wpick(ACTIVITY_TABLE, 14)
        sub = pick(t["subs"])
        rg = pick(t["rgs"])
        actor = pick([a for a in self.w.admins if a["t"] is t] or self.w.admins) if _rb(2) else None
        sp = pick(t["sps"])
        ip = self._ip(actor) if actor else sp["ip"]
        rid = (f"/SUBSCRIPTIONS/{sub.upper()}/RESOURCEGROUPS/{rg.upper()}" +
               ("/PROVIDERS/" + (path % hexu(4).lower() if "%s" in path else path) if path else ""))
        role, role_id = pick(AZ_ROLES)
        iat = sec - _rb(10)
        claims = {"aud": "https://management.core.windows.net/", "iss": f"https://sts.windows.net/{t['id']}/",
                  "iat": str(iat), "nbf": str(iat), "exp": str(iat + 3600 + _rb(12)),
                  "http://schemas.microsoft.com/claims/authnclassreference": "1",
                  "aio": tok() + tok(), "appid": APP["portal"][0] if actor else sp["appId"], "appidacr": "0" if actor else "1",
                  "http://schemas.microsoft.com/identity/claims/identityprovider": f"https://sts.windows.net/{t['id']}/",
                  "http://schemas.microsoft.com/identity/claims/objectidentifier": actor["oid"] if actor else sp["spId"],
                  "http://schemas.microsoft.com/identity/claims/tenantid": t["id"], "uti": tok(), "ver": "1.0",
                  "xms_tcdt": "1600000000"}
        if actor:
            claims.update({"http://schemas.microsoft.com/claims/authnmethodsreferences": "pwd,mfa",
                           "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": actor["upn"],
                           "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": actor["upn"],
                           "name": actor["name"], "puid": actor["puid"], "ipaddr": ip})
        ident = {"authorization": {"scope": rid.lower(), "action": ACTION[op],
                                   "evidence": {"role": role, "roleAssignmentScope": f"/subscriptions/{sub}",
                                                "roleAssignmentId": hexu(32).lower(), "roleDefinitionId": role_id.replace("-", ""),
                                                "principalId": (actor["oid"] if actor else sp["spId"]).replace("-", ""),
                                                "principalType": "User" if actor else "ServicePrincipal"}},
                 "claims": claims}
        cid = guid()
        stages = ([("Start", "Started.")] if starts else []) + [("Success", "Succeeded.OK") if _rb(5) else ("Failure", "Failed.Conflict")]
        for k, (rt, rs) in enumerate(stages):
            s2 = sec + k * (2 + _rb(6))
            rec = {"time": iso(s2) + "." + frac7() + "Z", "resourceId": rid, "operationName": op, "category": "Administrative",
                   "resultType": rt, "resultSignature": rs, "durationMs": str(0 if rt == "Start" else 500 + _rb(14)),
                   "callerIpAddress": ip, "correlationId": cid, "identity": ident, "level": "Information" if rt != "Failure" else "Error",
                   "location": "global", "properties": {
                       "statusCode": "Created" if rt != "Failure" else "Conflict", "serviceRequestId": guid() if rt != "Start" else None,
                       "eventCategory": "Administrative", "entity": rid, "message": ACTION[op],
                       "hierarchy": f"{t['id']}/{t['mg']}/{sub}"}}
            self.counts["activity"] += 1
            self.sink.write(f"PT1H-Administrative-{t['name']}-{self.sink.dayc(s2)}.json", json.dumps(rec) + "\n")


def gen_entra_audit(world, target, out, sink):
    ag = AuditGen(world, sink)
    for sec in paced(sink, target):
        if _rb(10) < 640:
            ag.directory(sec)
        else:
            ag.activity(sec)
    sink.close()
    c = ag.counts
    return f"{c['directory']} directory audits, {c['activity']} Azure Activity records"


def gen_gzip(world, target, out, sink):
    sg = SigninGen(world, sink)
    ual_bytes = [0]

    def on_issue(u, sec, new_session, session, token, ck):
        flow = None
        for fl in (USER_FLOWS_I if new_session else USER_FLOWS_NI):
            if fl[0] == ck:
                flow = fl
                break
        if flow is None:
            flow = (ck, {"owa": "exo", "outlookmobile": "exo", "onedrive": "spo", "teams": "teams", "exops": "exo"}.get(ck, "graph"), 1)
        sg.user_signin(u, sec, new_session, session, token, flow=flow, err=0)

    def emit(t, ct, sec, rec):
        line = json.dumps(rec, separators=(",", ":")) + "\n"
        ual_bytes[0] += len(line)
        sink.write(ual_name(sink, t, ct, sec), line)

    ug = UalGen(world, emit, on_issue)
    half = target / 2
    for sec in paced(sink, target):
        si_bytes = sink.bytes - ual_bytes[0]
        if ual_bytes[0] < half and (ual_bytes[0] / half) <= (si_bytes / half + 0.02):
            ug.burst(sec)
        else:
            # background sign-ins: other resources, failures, service principals
            if _rb(3) < 2:
                sg.sp_signin(sec)
            else:
                u = wpick(world.user_table, 16)
                st = ug.state.get(u["i"])
                sg.user_signin(u, sec, _rb(3) == 0, st[0] if st and _rb(3) else guid(), tok())
    sink.close()
    return ug, sg, ual_bytes[0]


# --------------------------------------------------------------------------
# Chainsaw twin


def make_twin(src, dst):
    """Writes dst/: what Chainsaw can read of src/. Returns (linked, rewritten, skipped) file lists."""
    os.makedirs(dst, exist_ok=True)
    linked, rewritten, skipped = [], [], []
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            continue
        if not (name.endswith(".json") or name.endswith(".jsonl")):
            skipped.append(name)
            continue
        if os.path.getsize(path) == 0:
            skipped.append(name + " (empty: Chainsaw fails on an empty file)")
            continue
        with open(path, "rb") as f:
            first = f.readline()
        tname = name + "l" if name.endswith(".json") else name
        i = first.find(b'"CreationTime":"')
        zoneless = i >= 0 and first[i + 16 + 19:i + 16 + 20] == b'"'
        if not zoneless:
            link = os.path.join(dst, tname)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(os.path.relpath(path, dst), link)
            linked.append(tname)
            continue
        with open(path, "rb") as f, open(os.path.join(dst, tname), "wb", buffering=1 << 20) as o:
            for line in f:
                i = line.find(b'"CreationTime":"')
                if i >= 0:
                    j = i + 16 + 19
                    if line[j:j + 1] == b'"':
                        line = line[:j] + b".0000000Z" + line[j:]
                o.write(line)
        rewritten.append(tname)
    return linked, rewritten, skipped


def dir_bytes(d):
    return sum(os.stat(os.path.join(d, n)).st_size for n in os.listdir(d) if os.path.isfile(os.path.join(d, n)))


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    twin = "--no-twin" not in sys.argv
    if len(args) != 3 or args[0] not in ("signin", "ual", "purview-csv", "gzip", "mail", "signin-envelope",
                                              "ual-powershell", "la-csv", "entra-audit"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    shape, size_mb, out = args[0], float(args[1]), args[2]
    target = int(size_mb * 1e6)
    if "--twin-only" in sys.argv:
        # (Re)build OUT_DIR.chainsaw from an existing OUT_DIR.
        tdir = out.rstrip("/") + ".chainsaw"
        if os.path.isdir(tdir):
            for n in os.listdir(tdir):
                os.unlink(os.path.join(tdir, n))
        if shape in NO_TWIN:
            print(f"  chainsaw: no twin: {NO_TWIN[shape]}")
        else:
            twin_report(out, tdir, *make_twin(out, tdir))
        return
    if os.path.isdir(out) and os.listdir(out):
        print(f"{out} exists and is not empty; remove it first", file=sys.stderr)
        sys.exit(2)
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    note = ""
    if shape == "mail":
        here = os.path.dirname(os.path.abspath(__file__))
        if size_mb < 100:
            print("  mail: note: hunt_gen.py always writes a ~63 MB sign-in file (40,000 sign-ins) and gives UAL "
                  "what is left of SIZE_MB, so below ~100 MB this shape has (almost) no UAL records")
        subprocess.run([sys.executable, os.path.join(here, "hunt_gen.py"), str(int(size_mb)), out,
                        f"--seed={seed_offset()}"], check=True)
        uncompressed = dir_bytes(out)
    else:
        # The envelope shape holds the records of the sign-in shape.
        # The envelope and PowerShell shapes hold the records of the
        # sign-in and UAL shapes.
        R.seed(SEED[{"signin-envelope": "signin", "ual-powershell": "ual", "la-csv": "signin"}.get(shape, shape)]
               + seed_offset())
        world = World()
        # gzip: a file per 5 days (what someone compressing daily exports in
        # batches would have); the others: a file per day.
        sink = Sink(out, gz=(shape == "gzip"), period=5 if shape == "gzip" else 1,
                    envelope=(shape == "signin-envelope"), la_csv=(shape == "la-csv"))
        if shape in ("signin", "signin-envelope", "la-csv"):
            note = gen_signin(world, target, out, sink)
        elif shape in ("ual", "ual-powershell"):
            ug = gen_ual(world, target, out, sink, powershell=(shape == "ual-powershell"))
            note = op_note(ug)
        elif shape == "purview-csv":
            ug = gen_ual(world, target, out, sink, csv_mode=True)
            note = op_note(ug)
        elif shape == "entra-audit":
            note = gen_entra_audit(world, target, out, sink)
        else:
            ug, sg, ub = gen_gzip(world, target, out, sink)
            c = sg.counts
            note = (f"UAL {ub / 1e6:.0f} MB, sign-ins {(sink.bytes - ub) / 1e6:.0f} MB ({sum(c.values())} sign-ins, "
                    f"{c['noninteractive']} non-interactive); " + op_note(ug))
        uncompressed = sink.bytes if shape not in ("purview-csv", "signin-envelope", "la-csv") else dir_bytes(out)
    secs = time.time() - t0
    on_disk = dir_bytes(out)
    print(f"{shape}: wrote {out}: {uncompressed / 1e6:.0f} MB uncompressed ({on_disk / 1e6:.0f} MB on disk) "
          f"in {secs:.1f} s ({uncompressed / 1e6 / max(secs, 1e-9):.0f} MB/s)")
    if note:
        print("  " + note)
    if not twin:
        return
    tdir = out.rstrip("/") + ".chainsaw"
    if shape in NO_TWIN:
        print(f"  chainsaw: no twin: {NO_TWIN[shape]}")
        return
    twin_report(out, tdir, *make_twin(out, tdir))


# Shapes Chainsaw cannot read, and why.
NO_TWIN = {
    "purview-csv": "Chainsaw reads no CSV input",
    "gzip": "Chainsaw reads no gzip input",
    "signin-envelope": "Chainsaw reads an envelope file as one document, not its records",
    "ual-powershell": "Chainsaw reads no UTF-16 input",
    "la-csv": "Chainsaw reads no CSV input",
}


def twin_report(out, tdir, linked, rewritten, skipped):
    msg = f"  chainsaw twin {tdir}: {len(linked)} file(s) linked (same bytes)"
    if rewritten:
        tb = sum(os.path.getsize(os.path.join(tdir, n)) for n in rewritten)
        msg += (f", {len(rewritten)} UAL file(s) rewritten ({tb / 1e6:.0f} MB; CreationTime + '.0000000Z', "
                f"NOT the same bytes: Chainsaw cannot parse zone-less UAL times)")
    if any(n.endswith(".jsonl") and not os.path.exists(os.path.join(out, n)) for n in linked):
        msg += "; PT1H .json JSON lines linked under .jsonl names (Chainsaw parses .json as one document)"
    if skipped:
        msg += f"; {len(skipped)} file(s) Chainsaw cannot read left out: {', '.join(skipped[:5])}"
    print(msg)


def op_note(ug):
    tot = sum(ug.ops.values()) or 1
    top = sorted(ug.ops.items(), key=lambda kv: -kv[1])
    mia = ug.ops.get("MailItemsAccessed", 0)
    return (f"{tot} UAL records, {len(ug.ops)} operations, MailItemsAccessed {mia * 100 / tot:.1f}%; top: "
            + ", ".join(f"{k} {v * 100 / tot:.1f}%" for k, v in top[:6]))


if __name__ == "__main__":
    main()
