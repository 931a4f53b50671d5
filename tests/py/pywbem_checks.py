"""pywbem against a running replicim CIM-XML server (the test provider).

Usage: pywbem_checks.py HTTP_URL HTTPS_URL CA_CERT USER PASSWORD

Every check asserts; the script prints one line per check and ends with
"N checks passed". Any failure raises and exits non-zero.
"""
import sys
import warnings

import pywbem
from pywbem import CIMInstance, CIMInstanceName, Uint16, Uint32, WBEMConnection, WBEMServer

from checklib import check, expect_error, summary  # noqa: E402

warnings.simplefilter("error")  # a tolerated server issue is a failure here

http_url, https_url, ca_cert, user, password = sys.argv[1:6]
NS = "root/cimv2"
conn = WBEMConnection(http_url, (user, password), default_namespace=NS)

# Classes and qualifiers
names = conn.EnumerateClassNames(DeepInheritance=True)
check("EnumerateClassNames deep lists the schema", "CIM_StorageSynchronized" in names and "TST_Gadget" in names, len(names))
top = conn.EnumerateClassNames()
check("EnumerateClassNames top level has no superclass", "CIM_ManagedElement" in top and "TST_Widget" not in top)
kids = conn.EnumerateClassNames(ClassName="TST_Widget")
check("EnumerateClassNames of a class lists direct subclasses", kids == ["TST_Gadget"], kids)
c = conn.GetClass("TST_Gadget", LocalOnly=False, IncludeQualifiers=True, IncludeClassOrigin=True)
check("GetClass has inherited properties with class origin", c.properties["Name"].class_origin == "TST_Widget" and c.properties["Name"].propagated)
check("GetClass carries Key qualifiers", c.properties["Id"].qualifiers["Key"].value is True)
check("GetClass carries methods and parameters", c.methods["Reset"].parameters["Result"].qualifiers["Out"].value is True)
local = conn.GetClass("TST_Gadget", LocalOnly=True, IncludeQualifiers=False)
check("GetClass LocalOnly drops inherited members", list(local.properties) == ["Extra"], list(local.properties))
pl = conn.GetClass("TST_Widget", LocalOnly=False, PropertyList=["size"])
check("GetClass PropertyList", list(pl.properties) == ["Size"], list(pl.properties))
classes = conn.EnumerateClasses(ClassName="CIM_Synchronized", DeepInheritance=True, LocalOnly=False)
check("EnumerateClasses deep", {x.classname for x in classes} >= {"CIM_StorageSynchronized", "RCM_StorageSynchronized", "CIM_GroupSynchronized"})
vm = conn.GetClass("CIM_Synchronized", LocalOnly=False).properties["CopyState"].qualifiers
check("CopyState ValueMap/Values", "Failedover" in vm["Values"].value and "10" in vm["ValueMap"].value)
q = conn.GetQualifier("Key")
check("GetQualifier", q.name == "Key" and q.type == "boolean" and q.overridable is False)
check("EnumerateQualifiers", len(conn.EnumerateQualifiers()) >= 30)

# Instances
insts = conn.EnumerateInstances("TST_Widget")
check("EnumerateInstances deep includes subclass instances", sorted(i.classname for i in insts) == ["TST_Gadget", "TST_Widget", "TST_Widget"])
g = [i for i in insts if i.classname == "TST_Gadget"][0]
check("EnumerateInstances deep has subclass properties", g["Extra"] == "more")
shallow = conn.EnumerateInstances("TST_Widget", DeepInheritance=False)
g2 = [i for i in shallow if i.classname == "TST_Gadget"][0]
check("EnumerateInstances DeepInheritance=False drops subclass properties", "Extra" not in g2.properties)
a = conn.GetInstance(CIMInstanceName("TST_Widget", {"Name": "a", "Id": Uint32(1)}, namespace=NS))
check("GetInstance types", a["Size"] == 10 and a["Flag"] is True and a["Offset"] == -1000 and a["Ratio"] == 0.25 and a["Letter"] == "w")
check("GetInstance escapes and arrays", a["Note"] == 'note <a> & "1"' and list(a["States"]) == [2, 5])
check("GetInstance datetime", str(a["Made"]) == "20261122080000.000000+060")
check("GetInstance NULL", a["InstanceID"] is None)
p = conn.GetInstance(CIMInstanceName("TST_Widget", {"Name": "a", "Id": 1}), PropertyList=["Size"], IncludeClassOrigin=True)
check("GetInstance PropertyList", list(p.properties) == ["Size"] and p.properties["Size"].class_origin == "TST_Widget")
paths = conn.EnumerateInstanceNames("TST_Widget")
check("EnumerateInstanceNames", len(paths) == 3 and all(set(x.keybindings) == {"Name", "Id"} for x in paths))
expect_error("GetInstance of a missing instance is NOT_FOUND (6)", 6, lambda: conn.GetInstance(CIMInstanceName("TST_Widget", {"Name": "zz", "Id": 9})))
expect_error("GetInstance with a missing key is INVALID_PARAMETER (4)", 4, lambda: conn.GetInstance(CIMInstanceName("TST_Widget", {"Name": "a"})))
expect_error("GetInstance of an unknown class is INVALID_CLASS (5)", 5, lambda: conn.GetInstance(CIMInstanceName("TST_Nope", {"Name": "a"})))
expect_error("EnumerateInstances of an unknown class is INVALID_CLASS (5)", 5, lambda: conn.EnumerateInstances("TST_Nope"))
expect_error("GetClass of an unknown class is NOT_FOUND (6)", 6, lambda: conn.GetClass("TST_Nope"))
expect_error("An unknown namespace is INVALID_NAMESPACE (3)", 3, lambda: conn.EnumerateInstances("TST_Widget", namespace="root/nope"))
expect_error("GetQualifier of an unknown qualifier is NOT_FOUND (6)", 6, lambda: conn.GetQualifier("Nope"))

# Writes through the provider
new = CIMInstance("TST_Widget", properties={"Name": "c", "Id": Uint32(7), "Size": Uint32(70), "Note": "new"})
path = conn.CreateInstance(new)
check("CreateInstance returns the path", path.keybindings["Name"] == "c" and path.keybindings["Id"] == 7)
expect_error("CreateInstance of a duplicate is ALREADY_EXISTS (11)", 11, lambda: conn.CreateInstance(new))
expect_error("CreateInstance with an unknown property is NO_SUCH_PROPERTY (12)", 12, lambda: conn.CreateInstance(CIMInstance("TST_Widget", properties={"Name": "d", "Id": Uint32(8), "Bogus": "x"})))
expect_error("CreateInstance with a wrong type is TYPE_MISMATCH (13)", 13, lambda: conn.CreateInstance(CIMInstance("TST_Widget", properties={"Name": "d", "Id": Uint32(8), "Size": "big"})))
expect_error("CreateInstance of a class without a provider is NOT_SUPPORTED (7)", 7, lambda: conn.CreateInstance(CIMInstance("CIM_ConcreteJob", properties={"InstanceID": "x"})))
got = conn.GetInstance(path)
got["Size"] = Uint32(71)
got["Note"] = "changed"
conn.ModifyInstance(got, PropertyList=["Size"])
after = conn.GetInstance(path)
check("ModifyInstance applies PropertyList only", after["Size"] == 71 and after["Note"] == "new")
conn.DeleteInstance(path)
expect_error("DeleteInstance removed it", 6, lambda: conn.GetInstance(path))

# Associations
a_path = CIMInstanceName("TST_Widget", {"Name": "a", "Id": Uint32(1)}, namespace=NS)
assoc = conn.Associators(a_path, AssocClass="TST_Link")
check("Associators", [x["Name"] for x in assoc] == ["b"] and assoc[0].path.host == "testhost")
check("Associators ResultRole", [x["Name"] for x in conn.Associators(a_path, ResultRole="Right")] == ["b"])
check("Associators Role filters", conn.Associators(a_path, Role="Right") == [])
check("Associators ResultClass filters by subclass", conn.Associators(a_path, ResultClass="TST_Gadget") == [])
names_ = conn.AssociatorNames(a_path, AssocClass="TST_Link")
check("AssociatorNames", len(names_) == 1 and names_[0].keybindings["Name"] == "b" and names_[0].namespace == NS)
every = conn.AssociatorNames(a_path)
check("AssociatorNames crosses namespaces (ElementConformsToProfile)", sorted((p.namespace, p.classname) for p in every) == [("root/cimv2", "TST_Widget"), ("root/interop", "RCM_RegisteredProfile")], every)
refs = conn.References(a_path, ResultClass="TST_Link")
check("References", len(refs) == 1 and refs[0]["Label"] == "a-b" and refs[0]["Left"].keybindings["Name"] == "a")
check("ReferenceNames Role", len(conn.ReferenceNames(a_path, Role="Left")) == 1 and conn.ReferenceNames(a_path, Role="Right") == [])
cls_refs = conn.References("TST_Widget")
ref_classes = {c[1].classname for c in cls_refs}
check("References of a class lists the associations that can reference it", "TST_Link" in ref_classes and "CIM_ElementConformsToProfile" in ref_classes and "CIM_HostedService" not in ref_classes, ref_classes)
cls_assoc = conn.AssociatorNames("TST_Widget", AssocClass="TST_Link")
check("AssociatorNames of a class", any(p.classname == "TST_Widget" for p in cls_assoc))
expect_error("Associators with an unknown AssocClass is INVALID_PARAMETER (4)", 4, lambda: conn.Associators(a_path, AssocClass="TST_Nope"))

# Queries
rows = conn.ExecQuery("WQL", "SELECT Name, Size FROM TST_Widget WHERE Size >= 20 AND NOT Name = 'zz'")
check("ExecQuery WQL", sorted(r["Name"] for r in rows) == ["b", "g"] and set(rows[0].properties) == {"Name", "Size"})
check("ExecQuery OR and IS NULL", len(conn.ExecQuery("WQL", "select * from TST_Widget where Size = 10 or InstanceID is not null")) == 1)
expect_error("ExecQuery CQL is QUERY_LANGUAGE_NOT_SUPPORTED (14)", 14, lambda: conn.ExecQuery("DMTF:CQL", "SELECT * FROM TST_Widget"))
expect_error("ExecQuery garbage is INVALID_QUERY (15)", 15, lambda: conn.ExecQuery("WQL", "SELECT FROM WHERE"))

# Methods
out = conn.InvokeMethod("Reset", a_path, Params=[("Force", True), ("Count", Uint16(3)), ("Peer", a_path)])
check("InvokeMethod typed parameters and out parameter", out[0] == 0 and out[1]["Result"] == "TST_Widget reset 3 times, force=true, peer=TST_Widget", out)
expect_error("InvokeMethod of an unknown method is METHOD_NOT_FOUND (17)", 17, lambda: conn.InvokeMethod("Explode", a_path))
expect_error("InvokeMethod with an unknown parameter is INVALID_PARAMETER (4)", 4, lambda: conn.InvokeMethod("Reset", a_path, Params=[("Bogus", True)]))
expect_error("InvokeMethod on a missing instance is NOT_FOUND (6)", 6, lambda: conn.InvokeMethod("Reset", CIMInstanceName("TST_Widget", {"Name": "zz", "Id": Uint32(9)}, namespace=NS)))
expect_error("InvokeMethod without a provider is METHOD_NOT_AVAILABLE (16)", 16, lambda: conn.InvokeMethod("RequestStateChange", "CIM_ConcreteJob", Params=[("RequestedState", Uint16(4))]))

# Pull operations
r = conn.OpenEnumerateInstances("TST_Widget", MaxObjectCount=1)
check("OpenEnumerateInstances returns one and a context", len(r.instances) == 1 and not r.eos and r.context is not None)
r2 = conn.PullInstancesWithPath(r.context, MaxObjectCount=1)
r3 = conn.PullInstancesWithPath(r2.context, MaxObjectCount=5)
check("PullInstancesWithPath to the end", len(r2.instances) == 1 and r3.eos and len(r3.instances) == 1)
p1 = conn.OpenEnumerateInstancePaths("TST_Widget", MaxObjectCount=2)
p2 = conn.PullInstancePaths(p1.context, MaxObjectCount=10)
check("OpenEnumerateInstancePaths + PullInstancePaths", len(p1.paths) + len(p2.paths) == 3 and p2.eos)
c1 = conn.OpenEnumerateInstances("TST_Widget", MaxObjectCount=0)
conn.CloseEnumeration(c1.context)
expect_error("A closed context is INVALID_ENUMERATION_CONTEXT (21)", 21, lambda: conn.PullInstancesWithPath(c1.context, MaxObjectCount=1))
expect_error("OperationTimeout 0 is INVALID_OPERATION_TIMEOUT (22)", 22, lambda: conn.OpenEnumerateInstances("TST_Widget", OperationTimeout=0))
expect_error("FilterQuery is FILTERED_ENUMERATION_NOT_SUPPORTED (25)", 25, lambda: conn.OpenEnumerateInstances("TST_Widget", FilterQueryLanguage="DMTF:FQL", FilterQuery="Size > 1"))
expect_error("ContinueOnError is CONTINUATION_ON_ERROR_NOT_SUPPORTED (26)", 26, lambda: conn.OpenEnumerateInstances("TST_Widget", ContinueOnError=True))
ra = conn.OpenAssociatorInstances(a_path, AssocClass="TST_Link", MaxObjectCount=10)
check("OpenAssociatorInstances", ra.eos and [i["Name"] for i in ra.instances] == ["b"])
rr = conn.OpenReferenceInstancePaths(a_path, ResultClass="TST_Link", MaxObjectCount=10)
check("OpenReferenceInstancePaths", rr.eos and len(rr.paths) == 1 and rr.paths[0].classname == "TST_Link")
qr = conn.OpenQueryInstances("WQL", "SELECT Name FROM TST_Widget WHERE Size > 15", MaxObjectCount=1)
qr2 = conn.PullInstances(qr.context, MaxObjectCount=5)
check("OpenQueryInstances + PullInstances", len(qr.instances) == 1 and qr2.eos and sorted(i["Name"] for i in qr.instances + qr2.instances) == ["b", "g"])
check("IterQueryInstances", len(list(conn.IterQueryInstances("WQL", "SELECT * FROM TST_Widget", MaxObjectCount=1).generator)) == 3)
it = list(conn.IterEnumerateInstances("TST_Widget", MaxObjectCount=1))
check("IterEnumerateInstances (pull in batches of 1)", len(it) == 3)

# Interop discovery as a management console does it
server = WBEMServer(conn)
check("interop namespace", server.interop_ns in ("interop", "root/interop"), server.interop_ns)
check("namespaces", {n.lower() for n in server.namespaces} >= {"root/cimv2"}, server.namespaces)
check("brand and version", server.brand == "replicim" and server.version == "0.1.0", (server.brand, server.version))
profiles = server.get_selected_profiles(registered_org="SNIA", registered_name="Server")
check("SNIA Server profile", len(profiles) == 1 and profiles[0]["RegisteredVersion"] == "1.6.1")
central = server.get_central_instances(profiles[0].path)
check("Server profile central instance is the object manager", len(central) == 1 and central[0].classname == "RCM_ObjectManager")
test_profiles = server.get_selected_profiles(registered_org="Other", registered_name="Test Widgets")
tc = server.get_central_instances(test_profiles[0].path)
check("a provider's profile reaches its element across namespaces", tc[0].keybindings["Name"] == "a" and tc[0].namespace == NS)
ref = conn.AssociatorNames(profiles[0].path, AssocClass="CIM_ReferencedProfile")
check("CIM_ReferencedProfile", [p["InstanceID"] for p in ref] == ["replicim:profile:1:Test Widgets:1.0.0"])
om = conn.EnumerateInstances("CIM_ObjectManager", namespace="root/interop")
check("exactly one CIM_ObjectManager", len(om) == 1 and om[0]["SystemName"] == "testhost")

# HTTPS with the server's own self-signed certificate as the CA
tls = WBEMConnection(https_url, (user, password), default_namespace=NS, ca_certs=ca_cert)
check("HTTPS with certificate verification", len(tls.EnumerateInstanceNames("TST_Widget")) == 3)

# Credentials
bad = WBEMConnection(http_url, (user, "wrong"), default_namespace=NS)
try:
    bad.EnumerateClassNames()
    raise AssertionError("wrong password accepted")
except pywbem.AuthError:
    check("wrong credentials are refused (401)", True)
anon = WBEMConnection(http_url, None, default_namespace=NS)
try:
    anon.EnumerateClassNames()
    raise AssertionError("no credentials accepted")
except pywbem.AuthError:
    check("missing credentials are refused (401)", True)

summary()
