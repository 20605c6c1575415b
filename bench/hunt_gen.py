#!/usr/bin/env python3
"""Generates a large, realistic input for benchmarking `tokenward hunt`.

Writes into OUT_DIR (default /work/bench-data/hunt; never commit it):
  ual-*.jsonl               UAL Management Activity API records, JSON lines
                            (SharePoint file operations, Exchange MailItemsAccessed
                            Bind/Sync, Exchange item operations, Entra logons),
                            about half carrying AppAccessContext tokens.
  signins-noninteractive-PT1H.json
                            Azure Monitor sign-in export (JSON lines) that issued
                            every token the UAL records carry.
Usage: hunt_gen.py [TOTAL_MB] [OUT_DIR] [--seed=N]   (default 1100 MB of UAL + sign-ins)
Deterministic: fixed seed; --seed=N adds N to it.
"""

import json
import os
import random
import sys

ARGS = [a for a in sys.argv[1:] if not a.startswith("--seed=")]
SEED = sum(int(a[len("--seed="):]) for a in sys.argv[1:] if a.startswith("--seed="))
TOTAL_MB = int(ARGS[0]) if len(ARGS) > 0 else 1100
OUT = ARGS[1] if len(ARGS) > 1 else "/work/bench-data/hunt"
R = random.Random(20230711 + SEED)
TENANT = "7c3a1c5e-0f2b-4c7e-9f1a-2b6d3e4f5a60"
USERS = [f"user{i:04d}@fabrikam.example" for i in range(2000)]
IPS = [f"198.51.100.{i}" for i in range(1, 255)] + [f"203.0.113.{i}" for i in range(1, 255)]
ALPH = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def hexid(n=32):
    return "%0*x" % (n, R.getrandbits(n * 4))


def guid():
    h = hexid()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def tok():
    return "".join(R.choices(ALPH, k=22))


os.makedirs(OUT, exist_ok=True)
# Per user: a session and a pool of tokens, all issued by sign-ins.
sessions = {u: guid() for u in USERS}
tokens = {u: [tok() for _ in range(20)] for u in USERS}
base = 1686787200  # 2023-06-15T00:00:00Z


def ts(sec):
    import time as _t
    return _t.strftime("%Y-%m-%dT%H:%M:%S", _t.gmtime(base + sec))


signin_path = os.path.join(OUT, "signins-noninteractive-PT1H.json")
written = 0
with open(signin_path, "w") as f:
    n = 0
    for u in USERS:
        for t in tokens[u]:
            n += 1
            sec = R.randint(0, 30 * 86400)
            props = {"id": guid(), "createdDateTime": ts(sec) + "Z", "userDisplayName": u.split("@")[0],
                     "userPrincipalName": u, "userId": guid(), "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
                     "appDisplayName": "Microsoft Office", "ipAddress": R.choice(IPS),
                     "clientAppUsed": "Mobile Apps and Desktop clients", "correlationId": guid(),
                     "conditionalAccessStatus": "success", "isInteractive": False,
                     "resourceDisplayName": "Office 365 Exchange Online",
                     "resourceId": "00000002-0000-0ff1-ce00-000000000000",
                     "status": {"errorCode": 0, "failureReason": "Other.", "additionalDetails": None},
                     "location": {"city": "Springfield", "state": "IL", "countryOrRegion": "US"},
                     "deviceDetail": {"deviceId": "", "displayName": "", "operatingSystem": "Windows10", "browser": "Rich Client 5.2.8.0"},
                     "uniqueTokenIdentifier": t, "sessionId": sessions[u], "tokenIssuerType": "AzureAD",
                     "incomingTokenType": "refreshToken", "homeTenantId": TENANT, "resourceTenantId": TENANT}
            env = {"time": ts(sec) + ".0000000Z", "resourceId": f"/tenants/{TENANT}/providers/Microsoft.aadiam",
                   "operationName": "Sign-in activity", "operationVersion": "1.0",
                   "category": "NonInteractiveUserSignInLogs", "tenantId": TENANT, "resultType": "0",
                   "callerIpAddress": props["ipAddress"], "correlationId": props["correlationId"],
                   "identity": props["userDisplayName"], "Level": 4, "location": "US", "properties": props}
            line = json.dumps(env, separators=(",", ":")) + "\n"
            f.write(line)
            written += len(line)
signin_mb = written / 1e6

SP = ('{{"CreationTime":"{t}","Id":"{id}","Operation":"{op}","OrganizationId":"' + TENANT + '","RecordType":6,'
      '"UserKey":"i:0h.f|membership|{uk}@live.com","UserType":0,"Version":1,"Workload":"SharePoint","ClientIP":"{ip}",'
      '"ObjectId":"https://fabrikam.sharepoint.com/sites/team{site}/Shared Documents/{doc}.docx","UserId":"{u}",'
      '"CorrelationId":"{c}","EventSource":"SharePoint","ItemType":"File","ListId":"{l}","ListItemUniqueId":"{li}",'
      '"Site":"{s}","UserAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36",'
      '"WebId":"{w}","SourceFileExtension":"docx","SiteUrl":"https://fabrikam.sharepoint.com/sites/team{site}/",'
      '"SourceFileName":"{doc}.docx","SourceRelativeUrl":"Shared Documents"{ctx}}}\n')
MIA = ('{{"CreationTime":"{t}","Id":"{id}","Operation":"MailItemsAccessed","OrganizationId":"' + TENANT + '","RecordType":50,'
       '"ResultStatus":"Succeeded","UserKey":"{uk}","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"{ip}",'
       '"UserId":"{u}","AppId":"d3590ed6-52b3-4102-aeff-aad2292ab01c","ClientAppId":"d3590ed6-52b3-4102-aeff-aad2292ab01c",'
       '"ClientIPAddress":"{ip}","ClientInfoString":"Client=MSExchangeRPC","ExternalAccess":false,"InternalLogonType":0,'
       '"LogonType":0,"LogonUserSid":"S-1-5-21-1-2-3-{n}","MailboxGuid":"{mg}","MailboxOwnerSid":"S-1-5-21-1-2-3-{n}",'
       '"MailboxOwnerUPN":"{u}","OperationProperties":[{{"Name":"MailAccessType","Value":"{acc}"}},{{"Name":"IsThrottled","Value":"False"}}],'
       '"OrganizationName":"fabrikam.onmicrosoft.com","OriginatingServer":"BN0PR11MB0000 (15.20.6500.000)\\r\\n",'
       '"SessionId":"{sess}","OperationCount":{cnt},"Folders":[{{"FolderItems":[{{"InternetMessageId":"<{m1}@fabrikam.example>","SizeInBytes":{sz}}}],'
       '"Id":"LgAAAAB{fid}","Path":"\\\\Inbox"}}]{ctx}}}\n')
EXO = ('{{"CreationTime":"{t}","Id":"{id}","Operation":"{op}","OrganizationId":"' + TENANT + '","RecordType":2,'
       '"ResultStatus":"Succeeded","UserKey":"{uk}","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"{ip}",'
       '"UserId":"{u}","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientIPAddress":"{ip}","ClientInfoString":"Client=OWA;Action=ViaProxy",'
       '"ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"MailboxGuid":"{mg}","MailboxOwnerUPN":"{u}",'
       '"OrganizationName":"fabrikam.onmicrosoft.com","OriginatingServer":"BN0PR11MB0000 (15.20.6500.000)\\r\\n",'
       '"Item":{{"Id":"RgAAAA{fid}","InternetMessageId":"<{m1}@fabrikam.example>","ParentFolder":{{"Id":"LgAAAA{fid}","Path":"\\\\Sent Items"}},"Subject":"Quarterly numbers {n}","SizeInBytes":{sz}}}}}\n')
AAD = ('{{"CreationTime":"{t}","Id":"{id}","Operation":"UserLoggedIn","OrganizationId":"' + TENANT + '","RecordType":15,'
       '"ResultStatus":"Success","UserKey":"{uk}","UserType":0,"Version":1,"Workload":"AzureActiveDirectory","ClientIP":"{ip}",'
       '"ObjectId":"00000003-0000-0ff1-ce00-000000000000","UserId":"{u}","AzureActiveDirectoryEventType":1,'
       '"ExtendedProperties":[{{"Name":"ResultStatusDetail","Value":"Redirect"}},{{"Name":"UserAgent","Value":"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"}},{{"Name":"RequestType","Value":"OAuth2:Authorize"}}],'
       '"ModifiedProperties":[],"Actor":[{{"ID":"{uk}","Type":0}},{{"ID":"{u}","Type":5}}],"ActorContextId":"' + TENANT + '",'
       '"ActorIpAddress":"{ip}","InterSystemsId":"{c}","IntraSystemId":"{li}","SupportTicketId":"","Target":[{{"ID":"00000003-0000-0ff1-ce00-000000000000","Type":0}}],'
       '"TargetContextId":"' + TENANT + '","ApplicationId":"89bee1f7-5e6e-4d8a-9f3d-ecd601259da7","ErrorNumber":"0"}}\n')

target = TOTAL_MB * 1e6 - written
files = 4
per_file = target / files
total_records = 0
for fi in range(files):
    with open(os.path.join(OUT, f"ual-{fi}.jsonl"), "w") as f:
        size = 0
        buf = []
        while size < per_file:
            u = R.choice(USERS)
            n = USERS.index(u) if False else R.randint(1000, 9999)
            sec = R.randint(0, 30 * 86400)
            ip = R.choice(IPS)
            r = R.random()
            ctx = ""
            if R.random() < 0.5:
                ctx = (',"AppAccessContext":{"AADSessionId":"%s","IssuedAtTime":"%s","UniqueTokenId":"%s"}'
                       % (sessions[u], ts(max(0, sec - 600)), R.choice(tokens[u])))
            common = dict(t=ts(sec), id=guid(), u=u, ip=ip, uk=hexid(16).upper(), c=guid(), n=n, ctx=ctx)
            if r < 0.40:
                line = SP.format(op=R.choice(["FileAccessed", "FileModified", "FilePreviewed", "PageViewed"]),
                                 site=R.randint(1, 300), doc=f"doc{R.randint(1, 99999)}", l=guid(), li=guid(), s=guid(),
                                 w=guid(), **common)
            elif r < 0.70:
                acc = "Sync" if R.random() < 0.05 else "Bind"
                line = MIA.format(acc=acc, mg=guid(), sess=sessions[u], cnt=R.randint(1, 5), m1=guid(),
                                  sz=R.randint(2000, 90000), fid=hexid(24), **common)
            elif r < 0.85:
                common["ctx"] = ""
                line = EXO.format(op=R.choice(["Send", "Create", "Update", "MoveToDeletedItems"]), mg=guid(), m1=guid(),
                                  sz=R.randint(2000, 90000), fid=hexid(24), **common)
            else:
                line = AAD.format(li=guid(), **common)
            buf.append(line)
            size += len(line)
            total_records += 1
            if len(buf) >= 10000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
print(f"wrote {OUT}: {total_records} UAL records + {len(USERS) * 20} sign-ins ({signin_mb:.0f} MB)")
