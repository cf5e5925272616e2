namespace UsageBilling.Web.Hosting;

/// <summary>Settings of the sample app itself, bound from the <c>App</c> section.</summary>
internal sealed class AppOptions
{
    public const string SectionName = "App";

    /// <summary>The meter the AI assistant records. Default <c>ai_messages</c>.</summary>
    public string AssistantMeter { get; set; } = "ai_messages";

    /// <summary>Seed a demo account with a subscription and some history (Development only). Default off.</summary>
    public bool SeedDemo { get; set; }

    /// <summary>The demo account's e-mail.</summary>
    public string DemoEmail { get; set; } = "demo@usagebilling.local";

    /// <summary>The demo account's password (a local demo credential, printed in the log on purpose).</summary>
    public string DemoPassword { get; set; } = "demo-password-1";

    /// <summary>The demo account's plan. Default <c>starter</c>.</summary>
    public string DemoPlan { get; set; } = "starter";

    /// <summary>How many days of history the demo account gets (at most 30). Default 12.</summary>
    public int DemoHistoryDays { get; set; } = 12;

    /// <summary>Health turns Degraded when the oldest unreported event is older than this. Default 10 minutes.</summary>
    public TimeSpan FlushLagDegradedAfter { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>How long the usage page waits for Stripe's invoices of past periods before showing local totals only. Default 3 seconds.</summary>
    public TimeSpan InvoiceLookupTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How long an account's invoices read from Stripe are reused by the usage page. Default 1 minute.</summary>
    public TimeSpan InvoiceCacheDuration { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>The in-process emulator's state file; empty = keep the state in memory only. Default <c>{DataFolder}/stripe-emulator.json</c>.</summary>
    public string? EmulatorStateFile { get; set; }
}
