using UsageBilling.Cli.Tests.Infrastructure;

namespace UsageBilling.Cli.Tests;

/// <summary><c>db prune</c> reads the database alone: an operator's cron needs the connection string, not the app's meters.</summary>
public sealed class DbPruneConfigurationTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "usagebilling-cli-tests", Guid.NewGuid().ToString("N"));

    public DbPruneConfigurationTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public async Task DbPrune_NoMetersConfigured_PrunesWithTheConnectionStringAlone()
    {
        Assert.False(File.Exists(Path.Combine(_folder, "appsettings.json")));
        var migrate = await CliRunner.RunAsync(_folder, "db", "migrate", "--connection", "Data Source=prune.db");
        Assert.True(migrate.ExitCode == 0, migrate.ToString());

        var prune = await CliRunner.RunAsync(_folder, "db", "prune", "--keep", "90d", "--connection", "Data Source=prune.db");

        Assert.True(prune.ExitCode == 0, prune.ToString());
        Assert.Contains("Pruned 0 acknowledged event(s) and 0 hourly rollup row(s) from before", prune.Stdout, StringComparison.Ordinal);
        Assert.Empty(prune.StderrLines);
    }

    [Fact]
    public async Task DbPrune_BadRetentionSettingWithoutMeters_OneLineNamesIt()
    {
        await File.WriteAllTextAsync(Path.Combine(_folder, "appsettings.json"), """{ "UsageBilling": { "Retention": { "BatchSize": 5 } } }""", TestContext.Current.CancellationToken);
        var migrate = await CliRunner.RunAsync(_folder, "db", "migrate", "--connection", "Data Source=prune.db");
        Assert.True(migrate.ExitCode == 0, migrate.ToString());

        var prune = await CliRunner.RunAsync(_folder, "db", "prune", "--keep", "90d", "--connection", "Data Source=prune.db");

        Assert.True(prune.ExitCode == 2, prune.ToString());
        var line = Assert.Single(prune.StderrLines);
        Assert.Contains("UsageBilling:Retention:BatchSize must be between 100 and 100000.", line, StringComparison.Ordinal);
        Assert.DoesNotContain("Meters", line, StringComparison.Ordinal);
    }
}
