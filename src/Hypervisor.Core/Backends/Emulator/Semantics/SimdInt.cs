using System.Runtime.Intrinsics;

namespace Paravirt.Hypervisor.Backends.Emulator.Semantics;

/// <summary>Vector operations without exceptions or flags (shuffles, integer arithmetic): the <c>Cond</c> of a <c>VecBinary</c> op.</summary>
internal enum VecOp : byte
{
    Shufpd,
    Movddup,
    Movshdup,
    Movsldup,
}

/// <summary>
/// Pure semantics of the SSE2..SSE4.1 vector instructions that raise no exception and set no flag: the result from
/// the destination's old value <c>a</c>, the source <c>b</c>, the immediate and (blendv) the implicit XMM0.
/// </summary>
internal static class SimdInt
{
    public static Vector128<byte> Execute(VecOp op, Vector128<byte> a, Vector128<byte> b, int imm, Vector128<byte> xmm0)
    {
        _ = xmm0;
        switch (op)
        {
            case VecOp.Shufpd:
                return Vector128.Create(a.AsUInt64()[imm & 1], b.AsUInt64()[(imm >> 1) & 1]).AsByte();
            case VecOp.Movddup:
                return Vector128.Create(b.AsUInt64()[0]).AsByte();
            case VecOp.Movshdup:
            {
                Vector128<uint> s = b.AsUInt32();
                return Vector128.Create(s[1], s[1], s[3], s[3]).AsByte();
            }
            case VecOp.Movsldup:
            {
                Vector128<uint> s = b.AsUInt32();
                return Vector128.Create(s[0], s[0], s[2], s[2]).AsByte();
            }
            default:
                throw new InvalidOperationException($"vector op {op} has no semantics");
        }
    }
}
