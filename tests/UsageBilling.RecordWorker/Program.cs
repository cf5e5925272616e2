// Records usage on command against the given database; the spend-control tests run two of these at
// once against one limit, and kill one while it holds an alert's delivery lease.
// Usage: UsageBilling.RecordWorker <sqlite|postgres> <connection string> <hard limit>
// Commands on stdin, one per line (each answered by one line on stdout):
//   run <userId> <count> <keyPrefix> [meter] -> "done <accepted> <rejected> <other>" after <count> concurrent RecordAsync calls of 1 unit
//                                        (of ai_messages unless a meter is named)
//   deliver                           -> "handling <alertId>" when the (never finishing) handler gets an alert, or "none"
using UsageBilling;
using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using UsageBilling.EntityFrameworkCore;

if (args.Length != 3)
{
    Console.Error.WriteLine("usage: UsageBilling.RecordWorker <sqlite|postgres> <connection string> <hard limit>");
    return 2;
}

var limit = long.Parse(args[2], CultureInfo.InvariantCulture);
var services = new ServiceCollection();
services.AddLogging(l => l.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace).SetMinimumLevel(LogLevel.Warning));
var handler = new HangingHandler();
services.AddSingleton<IUsageAlertHandler>(handler);
var builder = services.AddUsageBilling(o => WorkerPlans.Configure(o, limit));
_ = args[0] == "sqlite" ? builder.UseSqlite(args[1]) : builder.UsePostgres(args[1]);
await using var provider = services.BuildServiceProvider();
var recorder = provider.GetRequiredService<IUsageRecorder>();

// Warm up (EF model, connection pool, JIT) so that both workers' calls really overlap.
await provider.GetRequiredService<IUsageSummaryService>().GetCurrentPeriodAsync(Guid.NewGuid());
Console.WriteLine("ready");
Console.Out.Flush();
while (Console.ReadLine() is { } line)
{
    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    if (parts is ["run", var user, var count, var prefix, ..] && parts.Length <= 5)
    {
        var userId = Guid.Parse(user);
        var meter = parts.Length == 5 ? parts[4] : "ai_messages";
        int accepted = 0, rejected = 0, other = 0;
        await Task.WhenAll(Enumerable.Range(0, int.Parse(count, CultureInfo.InvariantCulture)).Select(i => Task.Run(async () =>
        {
            try
            {
                await recorder.RecordAsync(userId, meter, 1, $"{prefix}-{i}");
                Interlocked.Increment(ref accepted);
            }
            catch (UsageLimitExceededException)
            {
                Interlocked.Increment(ref rejected);
            }
            catch (Exception ex)
            {
                Console.Error.WriteLine(ex);
                Interlocked.Increment(ref other);
            }
        })));
        Console.WriteLine($"done {accepted} {rejected} {other}");
    }
    else if (parts is ["deliver"])
    {
        var dispatcher = provider.GetRequiredService<IUsageAlertDispatcher>();
        _ = Task.Run(() => dispatcher.DeliverOnceAsync());
        var first = await Task.WhenAny(handler.Handling.Task, Task.Delay(TimeSpan.FromSeconds(20)));
        Console.WriteLine(first == handler.Handling.Task ? $"handling {handler.Handling.Task.Result}" : "none");
    }
    else
    {
        Console.WriteLine($"unknown command: {line}");
    }

    Console.Out.Flush();
}

return 0;

/// <summary>Takes the alert and never finishes, so the process is killed holding its lease.</summary>
internal sealed class HangingHandler : IUsageAlertHandler
{
    public TaskCompletionSource<Guid> Handling { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task HandleAsync(UsageAlert alert, CancellationToken cancellationToken)
    {
        Handling.TrySetResult(alert.Id);
        await Task.Delay(Timeout.Infinite, cancellationToken);
    }
}

/// <summary>The plan the spend-control tests share with this worker.</summary>
internal static class WorkerPlans
{
    public static void Configure(UsageBillingOptions o, long hardLimit)
    {
        o.Meters["ai_messages"] = new MeterDefinition { DisplayName = "AI messages" };
        o.Meters["api_calls"] = new MeterDefinition { DisplayName = "API calls", Aggregation = MeterAggregation.Count };
        var plan = new PlanDefinition { DisplayName = "Limited" };
        plan.Meters["ai_messages"] = new PlanMeterPrice { Included = 0, UnitPrice = 0.01m, HardLimit = hardLimit };
        plan.Meters["api_calls"] = new PlanMeterPrice { Included = 0, UnitPrice = 0.01m };
        o.Plans["limited"] = plan;
        o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfLimit, Value = 50 });
        o.Limits.Alerts.Add(new AlertThreshold { Kind = AlertThresholdKind.PercentOfLimit, Value = 100 });
    }
}
