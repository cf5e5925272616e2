// Meter events per second the emulator accepts through Stripe.net with N concurrent clients.
//   dotnet run -c Release --project bench/UsageBilling.StripeEmulator.Bench -- [--clients 16] [--seconds 10] [--warmup 2] [--url http://127.0.0.1:12111]
// Without --url the emulator runs in this process on a free loopback port.
using System.Diagnostics;
using System.Globalization;
using Stripe;
using Stripe.Billing;
using UsageBilling.StripeEmulator;

var clients = Arg("--clients", 16);
var seconds = Arg("--seconds", 10);
var warmup = Arg("--warmup", 2);
var url = args.SkipWhile(a => a != "--url").Skip(1).FirstOrDefault();
var raw = args.Contains("--raw");

await using var server = url is null ? await StripeEmulatorServer.StartAsync() : null;
var apiBase = url?.TrimEnd('/') ?? server!.ApiBase;

StripeClient NewClient() => new(new StripeClientOptions
{
    ApiKey = "sk_test_bench",
    ApiBase = apiBase,
    MeterEventsBase = apiBase,
    HttpClient = new SystemNetHttpClient(new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }), maxNetworkRetries: 0),
});

var setup = NewClient();
var eventName = "bench_" + Guid.NewGuid().ToString("N")[..8];
await setup.V1.Billing.Meters.CreateAsync(new MeterCreateOptions
{
    DisplayName = "Bench",
    EventName = eventName,
    DefaultAggregation = new MeterDefaultAggregationOptions { Formula = "sum" },
});
var customers = new List<string>();
for (var i = 0; i < clients; i++)
{
    customers.Add((await setup.V1.Customers.CreateAsync(new CustomerCreateOptions { Email = $"bench{i}@example.com" })).Id);
}

long ok = 0;
long failed = 0;
var measuring = false;
using var stop = new CancellationTokenSource();
var workers = Enumerable.Range(0, clients).Select(i => Task.Run(async () =>
{
    var client = NewClient();
    using var http = new HttpClient { BaseAddress = new Uri(apiBase) };
    http.DefaultRequestHeaders.Authorization = new("Bearer", "sk_test_bench");
    var n = 0L;
    while (!stop.IsCancellationRequested)
    {
        try
        {
            if (raw)
            {
                // Server capacity without Stripe.net's client-side cost (diagnostic only).
                using var content = new FormUrlEncodedContent(new Dictionary<string, string>
                {
                    ["event_name"] = eventName,
                    ["identifier"] = string.Create(CultureInfo.InvariantCulture, $"w{i}-{n++}-{Guid.NewGuid():N}"),
                    ["payload[stripe_customer_id]"] = customers[i],
                    ["payload[value]"] = "1",
                });
                using var resp = await http.PostAsync("/v1/billing/meter_events", content);
                if (!resp.IsSuccessStatusCode)
                {
                    throw new StripeException($"HTTP {(int)resp.StatusCode}");
                }

                if (Volatile.Read(ref measuring))
                {
                    Interlocked.Increment(ref ok);
                }

                continue;
            }

            await client.V1.Billing.MeterEvents.CreateAsync(new MeterEventCreateOptions
            {
                EventName = eventName,
                Identifier = string.Create(CultureInfo.InvariantCulture, $"w{i}-{n++}-{Guid.NewGuid():N}"),
                Payload = new Dictionary<string, string> { ["stripe_customer_id"] = customers[i], ["value"] = "1" },
            });
            if (Volatile.Read(ref measuring))
            {
                Interlocked.Increment(ref ok);
            }
        }
        catch (StripeException)
        {
            Interlocked.Increment(ref failed);
        }
    }
})).ToArray();

await Task.Delay(TimeSpan.FromSeconds(warmup));
Volatile.Write(ref measuring, true);
var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
var sw = Stopwatch.StartNew();
await Task.Delay(TimeSpan.FromSeconds(seconds));
Volatile.Write(ref measuring, false);
var elapsed = sw.Elapsed.TotalSeconds;
var cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
var count = Interlocked.Read(ref ok);
await stop.CancelAsync();
await Task.WhenAll(workers);

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"clients={clients} seconds={elapsed:F1} accepted={count} failed={Interlocked.Read(ref failed)} throughput={count / elapsed:F0} meter events/s ({(url is null ? "in-process emulator" : url)}{(raw ? ", raw HttpClient" : ", Stripe.net")}, {Environment.ProcessorCount} cores)"));
// This process's CPU per call (client + in-process emulator) and the rate the machine's cores would sustain if
// this process had them to itself: a shared box (other builds running) lowers the first figure, not this one.
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"cpu={cpu:F1}s ({cpu / elapsed * 100:F0}% of one core) cpu_per_call={cpu / count * 1e6:F0}us cpu_bound_throughput={count / cpu * Environment.ProcessorCount:F0} calls/s"));
return 0;

int Arg(string name, int fallback)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : fallback;
}
