using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

namespace UsageBilling.Benchmarks;

public static partial class FlushBenchmark
{
    private const string ResultPrefix = "FLUSH-RESULT ";

    /// <summary>
    /// <c>flush-worker</c>: one <see cref="IUsageFlusher.FlushOnceAsync(CancellationToken)"/> in a process of its own,
    /// as an app's flusher runs, so its memory is the flusher's and the runtime's, not the harness's that generated
    /// the events. Prints one line, <see cref="ResultPrefix"/> + the measurement as JSON, for the parent.
    /// </summary>
    public static async Task<int> RunWorkerAsync(IReadOnlyList<string> rawArgs)
    {
        var args = new BenchArgs(rawArgs);
        var provider = (args.String("provider") ?? "postgres") == "sqlite" ? BenchProvider.Sqlite : BenchProvider.Postgres;
        var connection = args.String("connection") ?? throw new ArgumentException("--connection is required.");
        var apiBase = args.String("api-base") ?? throw new ArgumentException("--api-base is required.");
        var concurrency = args.Int("concurrency") ?? 32;
        var claimBatch = args.Int("claim-batch");
        var sendBatch = args.Int("send-batch");
        var transport = ParseTransport(args.String("transport"));
        var markBatch = args.Int("mark-batch");
        args.EnsureAllRead();

        await using var flusher = BuildFlusher(provider, connection, apiBase, o => ThroughputOptions(o, concurrency, claimBatch, sendBatch, transport, markBatch));
        var measured = await MeasureFlushAsync(flusher);
        Console.WriteLine(ResultPrefix + JsonSerializer.Serialize(measured));
        return 0;
    }

    private static FlushTransport ParseTransport(string? value) => value switch
    {
        null or "v1" => FlushTransport.V1,
        "v2stream" or "v2" => FlushTransport.V2Stream,
        _ => throw new ArgumentException($"--transport must be v1 or v2stream, was '{value}'."),
    };

    private static void ThroughputOptions(FlushOptions o, int concurrency, int? claimBatch, int? sendBatch, FlushTransport transport, int? markBatch)
    {
        o.Transport = transport;
        o.RequestsPerSecond = 100_000;
        o.MaxConcurrentCalls = concurrency;
        if (claimBatch is { } c)
        {
            o.ClaimBatchSize = c;
        }

        if (sendBatch is { } b)
        {
            o.SendBatchSize = b;
        }

        if (markBatch is { } m)
        {
            o.MarkBatchSize = m;
        }
    }

    /// <summary>One flush with its memory and phases, in this process.</summary>
    private static async Task<FlushMeasurement> MeasureFlushAsync(ServiceProvider flusher)
    {
        // Memory baseline: a full collection, then reset the kernel's peak-RSS counter (Linux) so the peak below is the
        // flush's, not the setup's.
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        var heapBefore = GC.GetTotalMemory(true);
        var rssBefore = Environment.WorkingSet;
        var committedBefore = GC.GetGCMemoryInfo().TotalCommittedBytes;
        var peakReset = MemoryProbe.TryResetPeakRss();
        using var probe = new MemoryProbe();
        using var phases = new PhaseListener();
        var clock = Stopwatch.StartNew();
        var result = await flusher.GetRequiredService<IUsageFlusher>().FlushOnceAsync();
        clock.Stop();
        var peak = probe.Stop();
        return new FlushMeasurement
        {
            Seconds = clock.Elapsed.TotalSeconds,
            Result = result,
            HeapBefore = heapBefore,
            RssBefore = rssBefore,
            CommittedBefore = committedBefore,
            Memory = peak,
            PeakRss = peakReset ? MemoryProbe.PeakRss() : null,
            ClaimSeconds = phases.ClaimPhase.TotalSeconds,
            SendSeconds = phases.SendPhase.TotalSeconds,
            Calls = phases.Calls,
        };
    }

    /// <summary>Runs <c>flush-worker</c> in a child process (this benchmark's own assembly) and reads its measurement.</summary>
    private static async Task<FlushMeasurement> MeasureFlushInChildAsync(BenchDatabase db, BenchEmulator emulator, Settings s)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        var arguments = new List<string>
        {
            Path.Combine(AppContext.BaseDirectory, "UsageBilling.Benchmarks.dll"), "flush-worker",
            "--provider", db.Provider == BenchProvider.Sqlite ? "sqlite" : "postgres",
            "--connection", db.ConnectionString, "--api-base", emulator.ApiBase,
            "--concurrency", s.Concurrency.ToString(CultureInfo.InvariantCulture),
            "--transport", s.Transport == FlushTransport.V2Stream ? "v2stream" : "v1",
        };
        if (s.ClaimBatch is { } c)
        {
            arguments.AddRange(["--claim-batch", c.ToString(CultureInfo.InvariantCulture)]);
        }

        if (s.SendBatch is { } b)
        {
            arguments.AddRange(["--send-batch", b.ToString(CultureInfo.InvariantCulture)]);
        }

        if (s.MarkBatch is { } mb)
        {
            arguments.AddRange(["--mark-batch", mb.ToString(CultureInfo.InvariantCulture)]);
        }

        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("flush-worker did not start.");
        Console.WriteLine($"   flusher in child process pid {process.Id}");
        FlushMeasurement? measured = null;
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            if (line.StartsWith(ResultPrefix, StringComparison.Ordinal))
            {
                measured = JsonSerializer.Deserialize<FlushMeasurement>(line[ResultPrefix.Length..]);
            }
            else
            {
                Console.WriteLine("   [flusher] " + line);
            }
        }

        await process.WaitForExitAsync();
        return process.ExitCode == 0 && measured is not null
            ? measured
            : throw new InvalidOperationException($"flush-worker exited with {process.ExitCode} without a measurement.");
    }

    /// <summary>What one flush measured (<see cref="MeasureFlushAsync"/>), in the process that ran it.</summary>
    private sealed class FlushMeasurement
    {
        public double Seconds { get; init; }

        public FlushResult Result { get; init; } = FlushResult.Empty;

        public long HeapBefore { get; init; }

        public long RssBefore { get; init; }

        public long CommittedBefore { get; init; }

        public MemoryPeak Memory { get; init; } = new(0, 0, 0);

        public long? PeakRss { get; init; }

        public double ClaimSeconds { get; init; }

        public double SendSeconds { get; init; }

        public long Calls { get; init; }
    }
}
