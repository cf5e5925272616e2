using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Stripe;
using Stripe.Billing;
using UsageBilling.StripeEmulator;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.Benchmarks;

/// <summary>
/// The Stripe emulator for a benchmark: by default in a child process (its own memory, its own GC,
/// its own thread pool), or in this process. Driven through <see cref="IStripeEmulatorAdmin"/> either way.
/// </summary>
internal sealed class BenchEmulator : IAsyncDisposable
{
    private readonly Process? _child;
    private readonly StripeEmulatorServer? _server;
    private readonly HttpClient? _adminHttp;

    private BenchEmulator(string apiBase, IStripeEmulatorAdmin admin, Process? child, StripeEmulatorServer? server, HttpClient? adminHttp)
    {
        ApiBase = apiBase;
        Admin = admin;
        _child = child;
        _server = server;
        _adminHttp = adminHttp;
        Stripe = new StripeClient(new StripeClientOptions { ApiKey = "sk_test_bench", ApiBase = apiBase, MeterEventsBase = apiBase });
    }

    public string ApiBase { get; }

    public IStripeEmulatorAdmin Admin { get; }

    public bool IsChild => _child is not null;

    public int? ChildPid => _child?.Id;

    /// <summary>A Stripe.net client for setup calls (meters, customers).</summary>
    public StripeClient Stripe { get; }

    public static async Task<BenchEmulator> StartInProcessAsync()
    {
        var server = await StripeEmulatorServer.StartAsync(new StripeEmulatorOptions());
        return new BenchEmulator(server.ApiBase, server.Admin, null, server, null);
    }

    /// <summary>Runs the emulator's own executable (copied next to this one by the project reference) on a free loopback port.</summary>
    /// <param name="options">Emulator options as <c>--Name value</c> pairs (the standalone emulator binds them).</param>
    public static async Task<BenchEmulator> StartChildAsync(params string[] options)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "UsageBilling.StripeEmulator.dll");
        if (!System.IO.File.Exists(Path.ChangeExtension(dll, ".runtimeconfig.json")))
        {
            throw new InvalidOperationException($"{dll} (with its runtimeconfig.json) not found; build the benchmark project first.");
        }

        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        var apiBase = $"http://127.0.0.1:{port}";
        var token = "emu_admin_bench_" + Guid.NewGuid().ToString("N");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { dll, "--urls", apiBase, "--AdminToken", token }.Concat(options))
        {
            start.ArgumentList.Add(a);
        }

        start.Environment["DOTNET_gcServer"] = "0";
        var child = Process.Start(start) ?? throw new InvalidOperationException("Could not start the emulator.");
        child.OutputDataReceived += (_, _) => { };
        child.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 } line)
            {
                Console.Error.WriteLine("[emulator] " + line);
            }
        };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();

        var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
        var admin = new EmulatorAdminClient(http, new Uri(apiBase), token);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await admin.GetNowAsync();
                break;
            }
            catch (HttpRequestException) when (deadline.Elapsed < TimeSpan.FromSeconds(60) && !child.HasExited)
            {
                await Task.Delay(200);
            }
        }

        return new BenchEmulator(apiBase, admin, child, null, http);
    }

    /// <summary>Clears all state (meters, customers, events, faults, rate limit) and creates sum meters.</summary>
    public async Task ResetWithMetersAsync(IEnumerable<string> meters)
    {
        await Admin.ResetAsync();
        await Admin.SetRateLimitAsync(null);
        await Admin.ClearFaultsAsync();
        var service = new MeterService(Stripe);
        foreach (var name in meters)
        {
            await service.CreateAsync(new MeterCreateOptions { DisplayName = name, EventName = name, DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" } });
        }
    }

    /// <summary>Creates <paramref name="count"/> customers concurrently; returns their ids in order.</summary>
    public async Task<string[]> CreateCustomersAsync(int count)
    {
        var ids = new string[count];
        var service = new CustomerService(Stripe);
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, ct) =>
        {
            ids[i] = (await service.CreateAsync(new CustomerCreateOptions { Email = $"user{i}@bench.example" }, cancellationToken: ct)).Id;
        });
        return ids;
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        if (_child is not null)
        {
            if (!_child.HasExited)
            {
                _child.Kill();
                await _child.WaitForExitAsync();
            }

            _child.Dispose();
        }

        _adminHttp?.Dispose();
    }
}
