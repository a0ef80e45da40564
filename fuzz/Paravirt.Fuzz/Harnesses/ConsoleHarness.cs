namespace Paravirt.Fuzz.Harnesses;

/// <summary>
/// The console ring: the guest attaches a page (maybe misaligned, maybe outside memory) and then runs up to 64 steps
/// of lying indices (out_prod, in_cons), output bytes, doorbells and polls, against host input from the input
/// itself. The host must never throw, never take more output than the guest produced, never write input indices
/// that claim more than the ring holds, and answer Broken once it stopped.
/// </summary>
internal sealed class ConsoleHarness : Harness
{
    private const ulong Page = 0x20000;
    private readonly GuestMemory _memory = new(FuzzGuest.MemorySize);
    private readonly Hypervisor.Hypercalls.HypercallDispatcher _dispatcher = FuzzGuest.NewDispatcher();

    public override void Run(ReadOnlySpan<byte> data)
    {
        var r = new FuzzReader(data);
        _memory.Clear(new GuestAddress(0), 1 << 20);
        byte[] input = r.Bytes(r.U16() % 4096).ToArray();
        var output = new MemoryStream();
        var console = new ConsoleDevice("console0", output, (r.U8() & 1) == 0 ? new MemoryStream(input) : null);
        using var guest = new FuzzGuest(_memory, _dispatcher, console);
        ulong page = (r.U8() & 7) == 0 ? r.Interesting(FuzzGuest.MemorySize) : Page;
        if (page % 4096 == 0 && page < FuzzGuest.MemorySize)
        {
            // A page above the cleared first MiB would still hold the indices of an earlier input (afl-fuzz runs
            // many inputs in one process), and the host rightly takes what they say: start every input clean.
            _memory.Clear(new GuestAddress(page), 4096);
        }
        long port = guest.Call(HypercallCode.ConsoleAttach, (r.U8() & 15) == 0 ? r.U8() : 0UL, page);
        if (port < 0)
        {
            return;
        }
        Exercised++;
        uint outProd = 0;
        long produced = 0;
        bool lied = false; // after a lying out_prod the guest's own count means nothing
        for (int step = 0; step < 64 && !r.AtEnd; step++)
        {
            switch (r.U8() % 6)
            {
                case 0: // write output bytes and publish them honestly
                    {
                        ReadOnlySpan<byte> bytes = r.Bytes(r.U16() % 3000);
                        uint outCons = _memory.Read<uint>(new GuestAddress(page + ConsoleInterface.OutConsOffset));
                        int room = (int)(ConsoleInterface.OutSize - (outProd - outCons));
                        int n = Math.Clamp(bytes.Length, 0, Math.Max(0, room));
                        for (int i = 0; i < n; i++)
                        {
                            _memory.Write(new GuestAddress(page + ConsoleInterface.OutOffset + ((outProd + (uint)i) & (ConsoleInterface.OutSize - 1))), bytes[i]);
                        }
                        outProd += (uint)n;
                        produced += n;
                        _memory.Write(new GuestAddress(page + ConsoleInterface.OutProdOffset), outProd);
                        break;
                    }
                case 1: // a lying out_prod
                    outProd = r.U32();
                    _memory.Write(new GuestAddress(page + ConsoleInterface.OutProdOffset), outProd);
                    lied = true;
                    break;
                case 2: // consume input (maybe lying)
                    _memory.Write(new GuestAddress(page + ConsoleInterface.InConsOffset), (r.U8() & 1) == 0
                        ? _memory.Read<uint>(new GuestAddress(page + ConsoleInterface.InProdOffset))
                        : r.U32());
                    break;
                case 3:
                    guest.Call(HypercallCode.EventSend, (r.U8() & 7) == 0 ? r.U8() : (ulong)port);
                    break;
                case 4:
                    guest.Call(HypercallCode.Poll, r.U32(), r.U64());
                    break;
                default:
                    guest.Call(HypercallCode.ConsoleWrite, r.Interesting(FuzzGuest.MemorySize), r.Interesting(FuzzGuest.MemorySize));
                    break;
            }
            if (_memory.Read<uint>(new GuestAddress(page + ConsoleInterface.InFlagsOffset)) > (uint)ConsoleInputFlags.EndOfInput)
            {
                throw new FuzzFindingException("the host wrote an unknown in_flags bit"); // only the host writes in_flags here
            }
            if (console.IsBroken && guest.Call(HypercallCode.EventSend, (ulong)port) != (long)HypercallStatus.Broken)
            {
                throw new FuzzFindingException("a broken console answered a doorbell with something other than Broken");
            }
        }
        guest.Stop();
        if (!lied && console.BytesOut > produced)
        {
            throw new FuzzFindingException($"the host took {console.BytesOut} output bytes; the guest produced {produced}");
        }
        if (console.BytesIn > input.Length)
        {
            throw new FuzzFindingException($"the host delivered {console.BytesIn} input bytes of {input.Length}");
        }
    }

    public override void Dispose() => _memory.Dispose();
}
