"""What every check script shares: one line per passed check, and a
failure that raises with the detail."""
from pywbem import CIMError

passed = []


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    passed.append(name)
    print(f"ok  {name}")


def expect_error(name, code, fn):
    """Runs fn, which must fail with CIM status `code`; returns the error."""
    try:
        fn()
    except CIMError as e:
        check(name, e.status_code == code, f"got {e.status_code} {e.status_description}")
        return e
    raise AssertionError(f"{name}: no error, expected {code}")


def summary():
    print(f"{len(passed)} checks passed")
