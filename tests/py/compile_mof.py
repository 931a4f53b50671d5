"""Compiles schema/ and mof/ with pywbem's own MOF compiler (pywbem_mock).

The MOF must be valid for the ecosystem, not only for replicim's parser.
Prints the class counts per namespace; exits non-zero on any error.
"""
import glob
import os
import sys

from pywbem_mock import FakedWBEMConnection

root = sys.argv[1]
classes = sorted(glob.glob(os.path.join(root, "schema", "*.mof"))) + \
    sorted(f for f in glob.glob(os.path.join(root, "mof", "*.mof")) if "interop" not in os.path.basename(f))
registrations = sorted(f for f in glob.glob(os.path.join(root, "mof", "*.mof")) if "interop" in os.path.basename(f))

conn = FakedWBEMConnection(default_namespace="root/cimv2")
for ns in ("root/interop", "root/cimv2"):
    if ns != "root/cimv2":
        conn.add_namespace(ns)
    for f in classes:
        conn.compile_mof_file(f, namespace=ns)
for f in registrations:
    conn.compile_mof_file(f, namespace="root/cimv2")
for ns in ("root/interop", "root/cimv2"):
    n = len(conn.EnumerateClassNames(namespace=ns, DeepInheritance=True))
    print(f"{ns}: {n} classes")
profiles = conn.EnumerateInstances("CIM_RegisteredProfile", namespace="root/interop")
print(f"root/interop: {len(profiles)} registered profiles")
assert n >= 50, n
assert len(profiles) >= 1
