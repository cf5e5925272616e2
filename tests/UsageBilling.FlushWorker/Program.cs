// Flushes forever against the given database and Stripe base URL; the crash test kills it with SIGKILL.
// Usage: UsageBilling.FlushWorker <sqlite|postgres> <connection string> <stripe api base>
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using UsageBilling.Configuration;
using UsageBilling.DependencyInjection;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.Flushing;
using UsageBilling.Stripe;

if (args.Length != 3)
{
    Console.Error.WriteLine("usage: UsageBilling.FlushWorker <sqlite|postgres> <connection string> <stripe api base>");
    return 2;
}

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
    o.SecretKey = "sk_test_crashworker";
    o.ApiBase = args[2];
    o.Timeout = TimeSpan.FromSeconds(2);
    o.MaxNetworkRetries = 1;
}).AddFlusher(o =>
{
    o.Enabled = false;
    o.ClaimBatchSize = 25;
    o.SendBatchSize = 10;
    o.MaxConcurrentCalls = 4;
    o.RequestsPerSecond = 200;
    o.LeaseDuration = TimeSpan.FromSeconds(2);
    o.RetryBaseDelay = TimeSpan.FromMilliseconds(200);
    o.RetryMaxDelay = TimeSpan.FromSeconds(1);
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
    try
    {
        await flusher.FlushOnceAsync();
    }
    catch (Exception ex)
    {
        Console.Error.WriteLine(ex.Message);
    }

    await Task.Delay(20);
}
