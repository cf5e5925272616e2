// Flushes forever against the given database and Stripe base URL; the crash tests kill it with SIGKILL.
// Usage: UsageBilling.FlushWorker <sqlite|postgres> <connection string> <stripe api base> [name=value ...]
// Settings (defaults in brackets): lease-ms [15000], timeout-ms [2000], retries [1], send-batch [10],
// concurrency [4], claim-batch [25], mark-batch [50], rps [200], id [0] (the API key is sk_test_crashworker<id>),
// v2stream [0] (1 = Flush:Transport V2Stream).
using UsageBilling;
using UsageBilling.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using UsageBilling.EntityFrameworkCore;

if (args.Length < 3)
{
    Console.Error.WriteLine("usage: UsageBilling.FlushWorker <sqlite|postgres> <connection string> <stripe api base> [name=value ...]");
    return 2;
}

var settings = args.Skip(3).Select(a => a.Split('=', 2)).ToDictionary(a => a[0], a => int.Parse(a[1], System.Globalization.CultureInfo.InvariantCulture));
int Setting(string name, int fallback) => settings.TryGetValue(name, out var value) ? value : fallback;

var services = new ServiceCollection();
// Logs go to stderr: stdout carries only the "ready" line the test waits for.
services.AddLogging(l => l.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning));
var builder = services.AddUsageBilling(o =>
{
    o.Meters["ai_messages"] = new MeterDefinition();
    o.Meters["api_calls"] = new MeterDefinition { Aggregation = MeterAggregation.Count };
});
_ = args[0] == "sqlite" ? builder.UseSqlite(args[1]) : builder.UsePostgres(args[1]);
builder.UseStripe(o =>
{
    // Each worker can have its own key (id=n), so the emulator can tell which flusher sent what.
    o.SecretKey = $"sk_test_crashworker{Setting("id", 0)}";
    o.ApiBase = args[2];
    o.Timeout = TimeSpan.FromMilliseconds(Setting("timeout-ms", 2000));
    o.MaxNetworkRetries = Setting("retries", 1);
}).AddFlusher(o =>
{
    o.Enabled = false;
    o.ClaimBatchSize = Setting("claim-batch", 25);
    o.SendBatchSize = Setting("send-batch", 10);
    o.MaxConcurrentCalls = Setting("concurrency", 4);
    o.MarkBatchSize = Setting("mark-batch", 50);
    o.RequestsPerSecond = Setting("rps", 200);
    o.LeaseDuration = TimeSpan.FromMilliseconds(Setting("lease-ms", 15000));
    o.RetryBaseDelay = TimeSpan.FromMilliseconds(200);
    o.RetryMaxDelay = TimeSpan.FromSeconds(1);
    o.Transport = Setting("v2stream", 0) == 1 ? FlushTransport.V2Stream : FlushTransport.V1;
});
await using var provider = services.BuildServiceProvider();
var flusher = provider.GetRequiredService<IUsageFlusher>();
// Warm up (EF model, connection pool, JIT) so the kill timer starts when real work starts.
await provider.GetRequiredService<IUsageFlushStore>().GetBacklogAsync(CancellationToken.None);

// The test waits for this line before it starts the kill timer.
Console.WriteLine("ready");
Console.Out.Flush();
while (true)
{
    var idle = false;
    try
    {
        var result = await flusher.FlushOnceAsync();
        idle = result.EventsClaimed == 0 && result.ReportsSent == 0 && result.ReportsRetried == 0;
    }
    catch (Exception ex)
    {
        Console.Error.WriteLine(ex.Message);
    }

    // Like a background flusher's interval, shortened: an idle worker polls less often than a busy one.
    await Task.Delay(idle ? 100 : 20);
}
