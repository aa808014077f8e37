"""Turn the protobuf descriptors embedded in a `livekit` wheel into one FileDescriptorSet.

The wheel's `livekit/rtc/_proto/*_pb2.py` modules carry the exact serialized
FileDescriptorProto of every .proto file the shipped liblivekit_ffi was built from.
We read them with `ast` (no protobuf package needed), order them so that each file
follows its dependencies, and write the FileDescriptorSet wire format by hand: it is
only `repeated FileDescriptorProto file = 1`.

usage: python3 extract_descriptors.py <wheel.whl> <out.binpb>
"""

import ast
import re
import sys
import zipfile

PREFIX = "livekit/rtc/_proto/"


def serialized_descriptor(source: str, name: str) -> bytes:
    tree = ast.parse(source, filename=name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "AddSerializedFile"
        ):
            return ast.literal_eval(node.args[0])
    raise SystemExit(f"{name}: no AddSerializedFile call found")


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def main() -> None:
    wheel, out_path = sys.argv[1], sys.argv[2]
    modules = {}
    deps = {}
    with zipfile.ZipFile(wheel) as archive:
        for entry in sorted(archive.namelist()):
            if entry.startswith(PREFIX) and entry.endswith("_pb2.py"):
                module = entry[len(PREFIX) : -len("_pb2.py")]
                source = archive.read(entry).decode("utf-8")
                modules[module] = serialized_descriptor(source, entry)
                deps[module] = re.findall(r"^from \. import (\w+)_pb2 as", source, re.M)
    if not modules:
        raise SystemExit(f"{wheel}: no {PREFIX}*_pb2.py modules")

    ordered, seen = [], set()

    def visit(module: str) -> None:
        if module in seen:
            return
        seen.add(module)
        for dep in deps[module]:
            visit(dep)
        ordered.append(module)

    for module in sorted(modules):
        visit(module)

    blob = bytearray()
    for module in ordered:
        data = modules[module]
        blob += b"\x0a" + varint(len(data)) + data
    with open(out_path, "wb") as out:
        out.write(blob)
    print(f"{len(ordered)} files: {' '.join(ordered)}")


if __name__ == "__main__":
    main()
